//! Drawing one frame from a [`Screen`]: the header (server, nodes, rate,
//! losses, pause, filter, sort), the tabs and breadcrumb, the table (its
//! columns cut to the width, least important first), the footer (keys, the
//! filter prompt, messages) and the help and detail overlays. Works on any
//! ratatui backend; tests draw to `TestBackend`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::conn::Kind;
use super::state::{App, Link, WINDOWS};
use super::tabs::{self, Column, Tab, Tone, View};

/// What a frame shows, taken from the [`App`] once per frame.
pub struct Screen<'a> {
    pub app: &'a App,
    pub view: &'a View,
    pub flows_per_sec: f64,
    pub history: &'a [u32],
    pub lost: u64,
    /// The detail panel's lines for the selected row.
    pub detail: Vec<String>,
    /// Colours off (NO_COLOR).
    pub plain: bool,
}

fn tone(t: Tone, plain: bool) -> Style {
    if plain {
        return Style::default();
    }
    match t {
        Tone::Plain => Style::default(),
        Tone::Good => Style::default().fg(Color::Green),
        Tone::Warn => Style::default().fg(Color::Yellow),
        Tone::Bad => Style::default().fg(Color::Red),
        Tone::Dim => Style::default().fg(Color::DarkGray),
    }
}

/// The columns that fit in `width`, in their order: the least important
/// (highest rank) go first, the first-ranked always stays.
pub fn fit(columns: &[Column], width: u16) -> Vec<usize> {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&i| (columns[i].rank, i));
    let mut kept = Vec::new();
    let mut used = 0u16;
    for i in order {
        let need = columns[i].width.min(width) + u16::from(!kept.is_empty());
        if kept.is_empty() || used + need <= width {
            kept.push(i);
            used += need;
        }
    }
    kept.sort_unstable();
    kept
}

pub fn draw(frame: &mut Frame, s: &Screen) {
    let area = frame.area();
    let [header, tabs_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(s)), header);
    frame.render_widget(Paragraph::new(tabs_line(s)), tabs_area);
    frame.render_widget(Paragraph::new(footer_line(s)), footer);
    if !s.app.detail {
        table(frame, s, body);
    } else {
        // The table keeps the top; the selected row's detail takes the rest.
        let [top, bottom] = Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
        table(frame, s, top);
        let lines: Vec<Line> = s.detail.iter().map(|l| Line::raw(l.as_str())).collect();
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title(" detail (d, Esc) ")),
            bottom,
        );
    }
    if s.app.help {
        let w = 62.min(area.width);
        let h = (HELP.len() as u16 + 2).min(area.height);
        let r = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        frame.render_widget(Clear, r);
        let lines: Vec<Line> = HELP.iter().map(|l| Line::raw(*l)).collect();
        frame.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys (? or Esc) ")),
            r,
        );
    }
}

pub const HELP: [&str; 14] = [
    "1-5, Tab    tabs: workloads, connections, drops, flows, nodes",
    "↑↓ j k      select; g G top, bottom; PgUp PgDn page",
    "Enter       drill down (workload → connections → flows)",
    "Esc         back up",
    "← →         sort column; i  invert the order",
    "/           filter, with lumen observe's flags",
    "            (--verdict DROPPED --namespace shop); Esc cancels",
    "Space       pause (counting goes on)",
    "+ -         rate window 10s … 10m",
    "d           detail of the selected row",
    "y           print it as a lumen observe command on exit",
    "w           write the table as JSON and CSV",
    "?           this help",
    "q, Ctrl-c   quit",
];

fn header_line<'a>(s: &Screen<'a>) -> Line<'a> {
    let app = s.app;
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let red = tone(Tone::Bad, s.plain).add_modifier(Modifier::BOLD);
    let mut spans = vec![Span::styled("lumen top", bold), Span::raw(format!(" {}", app.server))];
    if let Some(info) = &app.info {
        let kind = match info.kind {
            Kind::Relay => "relay",
            Kind::Observer => "observer",
        };
        let total = info.connected as usize + info.unavailable.len();
        spans.push(Span::raw(format!(" ({kind}) nodes {}/{total}", info.connected)));
        if !info.unavailable.is_empty() {
            spans.push(Span::styled(format!(" down: {}", info.unavailable.join(",")), red));
        }
    }
    match &app.link {
        Link::Connecting => spans.push(Span::raw(" connecting…")),
        Link::Connected => {}
        Link::Disconnected { reason, retry_in } => spans.push(Span::styled(
            format!(" DISCONNECTED ({reason}), retry in {}s", retry_in.as_secs_f64().ceil()),
            red,
        )),
    }
    spans.push(Span::raw(format!(" │ {} flows/s ", tabs::rate(s.flows_per_sec))));
    spans.push(Span::styled(tabs::sparkline(s.history, 20), tone(Tone::Good, s.plain)));
    if s.lost > 0 {
        spans.push(Span::styled(format!(" LOST {}", s.lost), red));
    }
    if let Some((_, arrived)) = &app.paused {
        spans.push(Span::styled(
            format!(" PAUSED (+{arrived})"),
            tone(Tone::Warn, s.plain).add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans)
}

fn tabs_line<'a>(s: &Screen<'a>) -> Line<'a> {
    let app = s.app;
    let mut spans = Vec::new();
    for tab in Tab::ALL {
        let text = format!(" {} {} ", tab.index() + 1, tab.title());
        spans.push(match tab == app.tab {
            true => Span::styled(text, Style::default().add_modifier(Modifier::REVERSED)),
            false => Span::raw(text),
        });
    }
    for level in &app.path {
        spans.push(Span::raw(format!(" › {}", level.crumb())));
    }
    let columns = tabs::columns(&app.level());
    let sort = app.sort[app.sort_slot()];
    let column = columns.get(sort.column).map_or("", |c| c.name);
    spans.push(Span::styled(
        format!(
            " │ sort {column} {} │ window {}s",
            if sort.ascending { "↑" } else { "↓" },
            WINDOWS[app.window]
        ),
        tone(Tone::Dim, s.plain),
    ));
    if !app.filter_text.is_empty() {
        spans.push(Span::raw(format!(" │ filter {}", app.filter_text)));
    }
    Line::from(spans)
}

fn footer_line<'a>(s: &Screen<'a>) -> Line<'a> {
    let app = s.app;
    if let Some(p) = &app.prompt {
        let mut spans = vec![Span::raw(format!("/{}", p.text)), Span::raw("█")];
        if let Some(e) = &p.error {
            spans.push(Span::styled(format!("  {e}"), tone(Tone::Bad, s.plain)));
        }
        return Line::from(spans);
    }
    if let Some(m) = &app.message {
        return Line::raw(m.clone());
    }
    let v = s.view;
    let mut text = format!("{} of {} rows", v.rows.len(), v.matched);
    if v.evicted > 0 {
        text += &format!(" ({} evicted)", v.evicted);
    }
    text += " │ ? help  q quit  / filter  Enter drill  Esc back  Space pause";
    Line::styled(text, tone(Tone::Dim, s.plain))
}

fn table(frame: &mut Frame, s: &Screen, area: Rect) {
    let v = s.view;
    let kept = fit(&v.columns, area.width);
    let header = Row::new(kept.iter().map(|&i| {
        let c = &v.columns[i];
        match c.numeric {
            true => Line::from(c.name).right_aligned(),
            false => Line::from(c.name),
        }
    }))
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = v.rows.iter().map(|cells| {
        Row::new(kept.iter().map(|&i| {
            let cell = &cells[i];
            let line = Line::styled(cell.text.clone(), tone(cell.tone, s.plain));
            match v.columns[i].numeric {
                true => line.right_aligned(),
                false => line,
            }
        }))
    });
    let widths: Vec<Constraint> = kept
        .iter()
        .map(|&i| Constraint::Length(v.columns[i].width.min(area.width)))
        .collect();
    let t = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected((!v.rows.is_empty()).then_some(s.app.selected));
    frame.render_stateful_widget(t, area, &mut state);
}
