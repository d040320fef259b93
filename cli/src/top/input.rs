//! Keys: what each does to the [`App`]. Pure, so tests press keys and
//! look at the state.

use std::time::SystemTime;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::{App, Prompt, WINDOWS};
use super::tabs::{self, Level, Tab, Target};
use crate::filters::FilterFlags;

/// Rows a PgUp/PgDn moves.
pub const PAGE: usize = 10;

impl App {
    /// Handles one key; `rows` is how many rows the current table has and
    /// `targets` where Enter leads from each.
    pub fn key(&mut self, key: KeyEvent, targets: &[Target], now: SystemTime) {
        if let Some(prompt) = &mut self.prompt {
            match key.code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Enter => self.apply_filter(),
                KeyCode::Backspace => {
                    prompt.text.pop();
                    prompt.error = None;
                }
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => self.prompt = None,
                KeyCode::Char(c) => {
                    prompt.text.push(c);
                    prompt.error = None;
                }
                _ => {}
            }
            return;
        }
        self.message = None;
        let rows = targets.len();
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => self.quit = true,
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = !self.help,
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Esc if self.detail => self.detail = false,
            KeyCode::Esc if self.path.pop().is_some() => self.selected = 0,
            KeyCode::Char(' ') => {
                self.paused = match self.paused.take() {
                    Some(_) => None,
                    None => Some((Box::new(self.model.snapshot(now, self.windows())), 0)),
                }
            }
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt {
                    text: self.filter_text.clone(),
                    error: None,
                })
            }
            KeyCode::Char(c @ '1'..='5') => self.switch(Tab::ALL[c as usize - '1' as usize]),
            KeyCode::Tab => self.switch(Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()]),
            KeyCode::BackTab => self.switch(Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]),
            KeyCode::Left | KeyCode::Right => {
                let n = tabs::columns(&self.level()).len();
                let sort = &mut self.sort[self.sort_slot()];
                sort.column = match key.code {
                    KeyCode::Left => (sort.column + n - 1) % n,
                    _ => (sort.column + 1) % n,
                };
            }
            KeyCode::Char('i') => {
                let sort = &mut self.sort[self.sort_slot()];
                sort.ascending = !sort.ascending;
            }
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(rows.saturating_sub(1)),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + PAGE).min(rows.saturating_sub(1)),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(PAGE),
            KeyCode::Char('g') | KeyCode::Home => self.selected = 0,
            KeyCode::Char('G') | KeyCode::End => self.selected = rows.saturating_sub(1),
            KeyCode::Enter => match targets.get(self.selected) {
                Some(Target::Workload(k)) => self.enter(Level::Workload(k.clone())),
                Some(Target::Connection(c)) => self.enter(Level::Connection(c.clone())),
                Some(Target::Flow(_)) => self.detail = true,
                _ => {}
            },
            KeyCode::Char('d') => self.detail = !self.detail,
            KeyCode::Char('+') => self.window = (self.window + 1).min(WINDOWS.len() - 1),
            KeyCode::Char('-') => self.window = self.window.saturating_sub(1),
            KeyCode::Char('y') => {
                let line = self.observe_command(targets.get(self.selected));
                self.message = Some(format!("on exit: {line}"));
                self.print_on_exit = Some(line);
            }
            KeyCode::Char('w') => self.message = Some(self.write_table(now)),
            _ => {}
        }
        self.selected = self.selected.min(rows.saturating_sub(1));
    }

    /// The sort kept for what is shown: per tab at the top level; drilling
    /// down shows connections (the Connections tab's) or flows (the Flows tab's).
    pub fn sort_slot(&self) -> usize {
        match self.level() {
            Level::Top(tab) => tab.index(),
            Level::Workload(_) => Tab::Connections.index(),
            Level::Connection(_) => Tab::Flows.index(),
        }
    }

    fn switch(&mut self, tab: Tab) {
        if self.tab != tab || !self.path.is_empty() {
            self.tab = tab;
            self.path.clear();
            self.selected = 0;
        }
    }

    fn enter(&mut self, level: Level) {
        self.path.push(level);
        self.selected = 0;
    }

    fn apply_filter(&mut self) {
        let Some(prompt) = &mut self.prompt else {
            return;
        };
        match FilterFlags::parse_line(&prompt.text) {
            Ok(filters) => {
                self.filter_text = prompt.text.trim().to_string();
                self.filters = filters;
                self.prompt = None;
                self.reset();
                self.restart = true;
            }
            Err(e) => prompt.error = Some(e),
        }
    }

    /// `lumen observe` for the selection: the filter in force, narrowed to
    /// the selected workload or connection.
    pub fn observe_command(&self, target: Option<&Target>) -> String {
        let mut words = vec!["lumen observe".to_string()];
        if !self.server.is_empty() {
            words.push(format!("--server {}", self.server));
        }
        if !self.filter_text.is_empty() {
            words.push(self.filter_text.clone());
        }
        let pod = |k: &lumen_model::NodeKey| match k.namespace.as_str() {
            "" => String::new(),
            ns => format!("{ns}/{}", k.name),
        };
        let mut narrow = |level: &Level| match level {
            Level::Workload(k) if !k.namespace.is_empty() => {
                words.push(format!("--namespace {} --label app={}", k.namespace, k.name));
            }
            Level::Connection(c) => {
                let (s, d) = (pod(&c.source), pod(&c.destination));
                if !s.is_empty() {
                    words.push(format!(
                        "--from-label app={} --from-namespace {}",
                        c.source.name, c.source.namespace
                    ));
                }
                if !d.is_empty() {
                    words.push(format!(
                        "--to-label app={} --to-namespace {}",
                        c.destination.name, c.destination.namespace
                    ));
                }
                if c.port != 0 {
                    words.push(format!("--to-port {}", c.port));
                }
                words.push(format!("--protocol {}", tabs::protocol_name(c.protocol).to_lowercase()));
            }
            _ => {}
        };
        match target {
            Some(Target::Workload(k)) => narrow(&Level::Workload(k.clone())),
            Some(Target::Connection(c)) => narrow(&Level::Connection(c.clone())),
            Some(Target::Flow(i)) => {
                // A flow row: its addresses, service port and protocol.
                let flows = self.flows();
                if let Some((f, (_, _, port, protocol))) =
                    flows.get(*i).and_then(|f| Some((*f, self.model.connection_of(f)?)))
                {
                    let ip = f.ip.as_ref();
                    let (src, dst) = match f.is_reply {
                        Some(true) => (ip.map(|i| &i.destination), ip.map(|i| &i.source)),
                        _ => (ip.map(|i| &i.source), ip.map(|i| &i.destination)),
                    };
                    if let (Some(src), Some(dst)) = (src, dst) {
                        words.push(format!("--from-ip {src} --to-ip {dst}"));
                    }
                    if port != 0 {
                        words.push(format!("--to-port {port}"));
                    }
                    words.push(format!("--protocol {}", tabs::protocol_name(protocol).to_lowercase()));
                }
            }
            _ => narrow(&self.level()),
        }
        words.push("-f".into());
        words.join(" ")
    }
}
