//! `lumen observe`'s printer: `GetFlowsResponse`s written the way `hubble
//! observe -o …` writes them. Flows and lost events go to stdout; what the
//! relay says about its nodes goes to stderr as Hubble's printer sends it
//! there (only nodes that are unavailable or failed), except in `-o jsonpb`,
//! which keeps every response in the stream it writes.

mod line;
mod time;

#[cfg(test)]
mod tests;

use std::io::Write;

use clap::ValueEnum;
use lumen_flow::format;
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

pub use line::{compact, dict, node_status, table, Style, DICT_SEPARATOR};
pub use time::{parse_time, TimeFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One line per flow.
    Compact,
    /// A `KEY: value` block per flow.
    Dict,
    /// The flow in protobuf JSON, one per line (as hubble's -o json with
    /// HUBBLE_COMPAT=legacy-json-output; its default -o json is -o jsonpb).
    Json,
    /// The GetFlowsResponse in protobuf JSON, one per line (readable by --input-file).
    Jsonpb,
    /// Aligned columns, printed when the query ends.
    #[value(alias = "tab")]
    Table,
}

/// Writes responses in one output format to `out`, and what Hubble's
/// printer sends to stderr to `err`; `finish` writes what a format holds
/// back (the table).
pub struct Printer<W: Write, E: Write> {
    out: W,
    err: E,
    output: Output,
    style: Style,
    /// Blocks written so far, for the dict separator.
    blocks: usize,
    held: Vec<GetFlowsResponse>,
}

impl<W: Write, E: Write> Printer<W, E> {
    pub fn new(out: W, err: E, output: Output, style: Style) -> Self {
        Printer {
            out,
            err,
            output,
            style,
            blocks: 0,
            held: Vec::new(),
        }
    }

    pub fn print(&mut self, response: GetFlowsResponse) -> anyhow::Result<()> {
        if matches!(response.response_types, Some(ResponseTypes::NodeStatus(_))) && self.output != Output::Jsonpb {
            return self.node_status(&response);
        }
        let text = match self.output {
            Output::Compact => compact(&response, &self.style).map(|l| l + "\n"),
            Output::Dict => dict(&response, &self.style).map(|block| self.separated(block)),
            Output::Json => format::json(&response)?.map(|l| l + "\n"),
            Output::Jsonpb => Some(format::jsonpb(&response)? + "\n"),
            Output::Table => {
                self.held.push(response);
                None
            }
        };
        if let Some(text) = text {
            self.out.write_all(text.as_bytes())?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// `block` after a separator unless it is the first.
    fn separated(&mut self, block: String) -> String {
        self.blocks += 1;
        match self.blocks {
            1 => block,
            _ => format!("{DICT_SEPARATOR}\n{block}"),
        }
    }

    fn node_status(&mut self, response: &GetFlowsResponse) -> anyhow::Result<()> {
        let text = match self.output {
            Output::Compact | Output::Table => node_status(response, &self.style, false),
            Output::Dict => node_status(response, &self.style, true).map(|block| {
                // Hubble's printer separates a node block from what came
                // before, and counts the first one as a block.
                match self.blocks {
                    0 => {
                        self.blocks = 1;
                        block
                    }
                    _ => format!("{DICT_SEPARATOR}\n{block}"),
                }
            }),
            Output::Json | Output::Jsonpb => None,
        };
        if let Some(text) = text {
            self.err.write_all(text.as_bytes())?;
            self.err.flush()?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<W> {
        if self.output == Output::Table {
            self.out.write_all(table(&self.held, &self.style).as_bytes())?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}
