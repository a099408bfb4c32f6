//! Plain-text tables in kubectl's style (upper-case headers, columns two spaces apart), aligned by
//! display width: "Ủy ban nhân dân" is 15 columns wide on a terminal whether its letters are
//! precomposed or written with combining marks, and neither its byte length (23) nor its `char`
//! count says so. Colour is added after the padding is computed, so escape codes never shift a
//! column.

use unicode_width::UnicodeWidthStr;

/// How a cell is painted on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Paint {
    #[default]
    Plain,
    Good,
    Warning,
    Bad,
    Dim,
}

impl Paint {
    fn ansi(self) -> Option<&'static str> {
        match self {
            Paint::Plain => None,
            Paint::Good => Some("\x1b[32m"),
            Paint::Warning => Some("\x1b[33m"),
            Paint::Bad => Some("\x1b[31m"),
            Paint::Dim => Some("\x1b[2m"),
        }
    }
}

/// One cell: its text and how to paint it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cell {
    pub text: String,
    pub paint: Paint,
}

impl Cell {
    pub fn painted(text: impl Into<String>, paint: Paint) -> Self {
        Cell { text: text.into(), paint }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell { text: text.to_owned(), paint: Paint::Plain }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, paint: Paint::Plain }
    }
}

/// The columns a string takes on a terminal.
pub fn display_width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// A table of rows under a header.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    right_aligned: Vec<bool>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Table {
            header: header.iter().map(|h| h.as_ref().to_uppercase()).collect(),
            right_aligned: vec![false; header.len()],
            rows: Vec::new(),
        }
    }

    /// Numbers read better right-aligned.
    pub fn right_align(mut self, column: usize) -> Self {
        self.right_aligned[column] = true;
        self
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.header.len(), "a row of another table");
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines; `colour` adds ANSI colours (only for a terminal).
    pub fn render(&self, colour: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| display_width(h)).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(display_width(&cell.text));
            }
        }
        let header: Vec<Cell> = self.header.iter().map(|h| Cell::from(h.as_str())).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let gap = " ".repeat(widths[i] - display_width(&cell.text));
                let text = match (colour, cell.paint.ansi()) {
                    (true, Some(code)) => format!("{code}{}\x1b[0m", cell.text),
                    _ => cell.text.clone(),
                };
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right_aligned[i] {
                    line.push_str(&gap);
                    line.push_str(&text);
                } else {
                    line.push_str(&text);
                    line.push_str(&gap);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Whether to colour: only on a terminal, and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>).
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_is_aligned_by_display_width_composed_or_not() {
        let composed = "Ủy ban nhân dân";
        let decomposed = "U\u{31b}\u{309}y ban nha\u{302}n da\u{302}n";
        assert_ne!(composed.len(), decomposed.len());
        assert_eq!(display_width(composed), 15);
        assert_eq!(display_width(decomposed), 15);
        let mut table = Table::new(&["agency", "code"]);
        table.push(vec![composed.into(), "H17".into()]);
        table.push(vec![decomposed.into(), "H17.01".into()]);
        table.push(vec!["Sở Y tế".into(), "H17.03".into()]);
        let rendered = table.render(false);
        // The code column starts at the same display column on every line.
        let columns: Vec<usize> = rendered
            .lines()
            .map(|line| display_width(&line[..line.find("H1").or_else(|| line.find("CODE")).unwrap()]))
            .collect();
        assert!(columns.iter().all(|c| *c == columns[0]), "{rendered}\n{columns:?}");
        assert_eq!(rendered.lines().next().unwrap(), "AGENCY           CODE");
    }

    #[test]
    fn colour_codes_do_not_shift_columns() {
        let mut table = Table::new(&["name", "ready"]).right_align(1);
        table.push(vec![Cell::painted("xã", Paint::Bad), "1".into()]);
        table.push(vec!["phường".into(), "10".into()]);
        let plain = table.render(false);
        let coloured = table.render(true);
        assert_eq!(plain, "NAME    READY\nxã          1\nphường     10\n");
        assert_eq!(coloured.replace("\x1b[31m", "").replace("\x1b[0m", ""), plain);
        assert!(coloured.contains("\x1b[31mxã\x1b[0m"));
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
