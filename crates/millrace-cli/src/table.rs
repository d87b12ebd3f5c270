//! Human output of the operator commands: aligned columns, fitted to the terminal's width when
//! stdout is one (long cells wrap), full width when piped, and never coloured. Scripts use
//! `--json` instead, whose shape is documented; this layout may change.

use std::io::IsTerminal as _;

use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width, presets};

use crate::output::outln;

/// A table being built: a header, then rows of cells.
pub(crate) struct Rows {
    table: Table,
}

impl Rows {
    /// A table with these column headers.
    pub(crate) fn new<const N: usize>(header: [&str; N]) -> Self {
        let mut table = Table::new();
        table.load_style(presets::NOTHING).set_header(header);
        // No leading blank; two spaces between columns.
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        if std::io::stdout().is_terminal() {
            let (_, width) = console::Term::stdout().size();
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(width.max(40));
        } else {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
        Rows { table }
    }

    /// Keeps a column from being narrowed below its content (ids, states), so that the
    /// long free-text columns wrap instead.
    pub(crate) fn keep(&mut self, columns: &[usize]) -> &mut Self {
        for &i in columns {
            if let Some(column) = self.table.column_mut(i) {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
        self
    }

    /// Caps a free-text column's width on a terminal.
    pub(crate) fn cap(&mut self, column: usize, width: u16) -> &mut Self {
        if let Some(c) = self.table.column_mut(column) {
            c.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(width)));
        }
        self
    }

    /// Adds a row.
    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) -> &mut Self {
        self.table.add_row(cells);
        self
    }

    /// Prints the table, one line at a time (so a closed stdout stops the command quietly).
    pub(crate) fn print(&self) -> anyhow::Result<()> {
        for line in self.table.lines() {
            outln!("{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `-` for a missing value.
pub(crate) fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The first line of `text`, cut to `max` characters with an ellipsis.
pub(crate) fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && !text.contains('\n') {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}
