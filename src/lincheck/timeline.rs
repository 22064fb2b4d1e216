//! One key's history drawn as a self-contained HTML page, to read a failed check by eye: one
//! lane per client, each operation a bar from its call to its return, the operations the
//! checker could not place marked, and a list of them below with their times.
//!
//! The time axis is by rank, not by duration: every distinct call or return time gets one
//! column. Linearizability cares only about the order of events, and a run of twenty simulated
//! seconds with a few milliseconds per operation would otherwise be one long empty stretch. The
//! real times are on the ruler and in each bar's tooltip.
//!
//! The page carries its own CSS and no script: it must open anywhere, years later, from a CI
//! artifact.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use super::{Operation, Verdict};

/// Width of one column of the time axis, in pixels.
const COLUMN: usize = 28;
/// Height of one row of bars.
const ROW: usize = 22;
/// Width of the lane names on the left.
const NAMES: usize = 90;
/// A ruler label every this many columns.
const TICK_EVERY: usize = 8;

/// Everything the page shows about one key.
pub struct Timeline<'a, I, O> {
    /// The key whose history this is.
    pub key: &'a str,
    /// How to run the history again (a seed, a command): shown as written.
    pub replay: &'a str,
    pub ops: &'a [Operation<I, O>],
    /// The client that made each operation, index for index with `ops`.
    pub clients: &'a [u64],
    /// What the checker said about `ops`; its indices are into `ops`.
    pub verdict: &'a Verdict,
}

/// How the page marks one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// Not part of what the checker reported.
    Plain,
    /// The `n`th (from 1) of the longest order the checker found.
    Ordered(usize),
    /// Could not go next after the longest order.
    Stuck,
    /// Could not go next, and had to take effect by its return: where the search turned back.
    Overdue,
}

impl<I: Display, O: Display> Timeline<'_, I, O> {
    pub fn to_html(&self) -> String {
        assert_eq!(
            self.ops.len(),
            self.clients.len(),
            "one client per operation"
        );
        let marks = marks(self.ops.len(), self.verdict);
        let axis = Axis::new(self.ops);
        let mut page = String::new();
        page.push_str(&header(self.key, self.replay, self.verdict, self.ops.len()));
        page.push_str(LEGEND);
        page.push_str(&self.chart(&axis, &marks));
        page.push_str(&self.listing(&marks));
        page.push_str("</body>\n</html>\n");
        page
    }

    fn chart(&self, axis: &Axis, marks: &[Mark]) -> String {
        let width = NAMES + (axis.columns() + 1) * COLUMN;
        let mut chart = format!(
            "<div class=\"chart\"><div class=\"inner\" style=\"width:{width}px\">\n{}",
            axis.ruler()
        );
        let mut by_client: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, client) in self.clients.iter().enumerate() {
            by_client.entry(*client).or_default().push(i);
        }
        for (client, ops) in &by_client {
            let rows = rows(ops.iter().map(|&i| axis.span(&self.ops[i])));
            let height = (rows.iter().max().map_or(0, |r| r + 1)).max(1) * ROW;
            chart.push_str(&format!(
                "<div class=\"lane\" style=\"height:{height}px\"><div class=\"who\">client {client}</div>\n"
            ));
            for (&i, row) in ops.iter().zip(rows) {
                chart.push_str(&self.bar(i, row, axis, marks[i]));
            }
            chart.push_str("</div>\n");
        }
        chart.push_str("</div></div>\n");
        chart
    }

    fn bar(&self, i: usize, row: usize, axis: &Axis, mark: Mark) -> String {
        let op = &self.ops[i];
        let (first, last) = axis.span(op);
        let left = NAMES + first * COLUMN + 1;
        let width = (last - first + 1) * COLUMN - 2;
        let top = row * ROW + 2;
        let mut class = vec!["op"];
        let mut prefix = String::new();
        match mark {
            Mark::Plain => {}
            Mark::Ordered(n) => {
                class.push("ordered");
                prefix = format!("#{n} ");
            }
            Mark::Stuck => class.push("stuck"),
            Mark::Overdue => class.push("stuck overdue"),
        }
        if op.ret.is_none() {
            class.push("open");
        }
        let title = format!(
            "op {i}, client {}\ncall {}\nreturn {}\n{}{}",
            self.clients[i],
            millis(op.call),
            op.ret.map_or("never (outcome unknown)".to_owned(), millis),
            describe(op),
            match mark {
                Mark::Plain => String::new(),
                Mark::Ordered(n) => format!("\n#{n} in the longest order found"),
                Mark::Stuck => "\ncould not go next after the longest order found".to_owned(),
                Mark::Overdue => "\ncould not go next, and had to take effect by its return: \
                                  the check failed here"
                    .to_owned(),
            }
        );
        format!(
            "<div id=\"op{i}\" class=\"{}\" style=\"left:{left}px;top:{top}px;width:{width}px\" title=\"{}\">{}</div>\n",
            class.join(" "),
            escape(&title),
            escape(&format!("{prefix}{}", describe(op)))
        )
    }

    /// Below the chart, the marked operations with their times; each links to its bar.
    fn listing(&self, marks: &[Mark]) -> String {
        let Verdict::NotLinearizable { longest, .. } = self.verdict else {
            return String::new();
        };
        let row = |i: usize, note: &str| {
            let op = &self.ops[i];
            format!(
                "<tr><td><a href=\"#op{i}\">op {i}</a></td><td>client {}</td><td>{}</td><td>{}</td><td>{}</td><td>{note}</td></tr>\n",
                self.clients[i],
                millis(op.call),
                op.ret.map_or("never".to_owned(), millis),
                escape(&describe(op)),
            )
        };
        let head = "<tr><th>op</th><th>client</th><th>call</th><th>return</th><th>operation : answer</th><th></th></tr>\n";
        let mut listing = format!(
            "<h2>Operations that could not go next after the longest order found</h2>\n<table>\n{head}"
        );
        for (i, mark) in marks.iter().enumerate() {
            match mark {
                Mark::Overdue => listing.push_str(&row(
                    i,
                    "had to take effect by its return: the check failed here",
                )),
                Mark::Stuck => listing.push_str(&row(i, "")),
                _ => {}
            }
        }
        listing.push_str("</table>\n");
        listing.push_str(&format!(
            "<details><summary>The longest order found ({} operations, first to last)</summary>\n<table>\n{head}",
            longest.len()
        ));
        for (n, &i) in longest
            .iter()
            .enumerate()
            .filter(|(_, &i)| i < self.ops.len())
        {
            listing.push_str(&row(i, &format!("#{}", n + 1)));
        }
        listing.push_str("</table></details>\n");
        listing
    }
}

/// Each operation's mark; indices the verdict names outside `0..n` are ignored.
fn marks(n: usize, verdict: &Verdict) -> Vec<Mark> {
    let mut marks = vec![Mark::Plain; n];
    if let Verdict::NotLinearizable {
        longest,
        stuck,
        overdue,
    } = verdict
    {
        let mut set = |i: usize, mark: Mark| {
            if let Some(m) = marks.get_mut(i) {
                *m = mark;
            }
        };
        for (n, &i) in longest.iter().enumerate() {
            set(i, Mark::Ordered(n + 1));
        }
        for &i in stuck {
            set(i, Mark::Stuck);
        }
        if let Some(i) = *overdue {
            set(i, Mark::Overdue);
        }
    }
    marks
}

/// The shared time axis: one column per distinct call or return time, and one more at the
/// end where operations of unknown outcome run to.
struct Axis {
    column_of: BTreeMap<u64, usize>,
}

impl Axis {
    fn new<I, O>(ops: &[Operation<I, O>]) -> Axis {
        let times: BTreeSet<u64> = ops
            .iter()
            .flat_map(|op| [Some(op.call), op.ret.map(|r| r.max(op.call))])
            .flatten()
            .collect();
        Axis {
            column_of: times.into_iter().enumerate().map(|(c, t)| (t, c)).collect(),
        }
    }

    /// Columns for known times; the last one, `columns()`, is "never".
    fn columns(&self) -> usize {
        self.column_of.len()
    }

    /// The first and last column an operation covers.
    fn span<I, O>(&self, op: &Operation<I, O>) -> (usize, usize) {
        let first = self.column_of[&op.call];
        let last = op
            .ret
            .map_or(self.columns(), |r| self.column_of[&r.max(op.call)]);
        (first, last)
    }

    fn ruler(&self) -> String {
        let mut ruler = String::from("<div class=\"ruler\"><div class=\"who\">time</div>");
        for (time, column) in &self.column_of {
            if column % TICK_EVERY == 0 {
                ruler.push_str(&format!(
                    "<span style=\"left:{}px\">{}</span>",
                    NAMES + column * COLUMN,
                    millis(*time)
                ));
            }
        }
        ruler.push_str(&format!(
            "<span style=\"left:{}px\">never</span></div>\n",
            NAMES + self.columns() * COLUMN
        ));
        ruler
    }
}

/// Puts each span (first, last column) in the lowest row where it overlaps nothing; a client
/// whose operation never returned went on calling, so its open bar needs a row of its own.
fn rows(spans: impl Iterator<Item = (usize, usize)>) -> Vec<usize> {
    let mut ends: Vec<usize> = Vec::new(); // last column taken, per row
    spans
        .map(|(first, last)| {
            let row = ends.iter().position(|&end| end < first).unwrap_or_else(|| {
                ends.push(0);
                ends.len() - 1
            });
            ends[row] = last;
            row
        })
        .collect()
}

fn header(key: &str, replay: &str, verdict: &Verdict, ops: usize) -> String {
    let key = escape(key);
    let outcome = match verdict {
        Verdict::Linearizable => "linearizable".to_owned(),
        Verdict::NotLinearizable { longest, .. } => format!(
            "<b>not linearizable</b>: the longest order found places {} of {ops} operations, \
             and after it none of the operations marked red could go next",
            longest.len()
        ),
        Verdict::GaveUp { steps } => format!("the check gave up after {steps} steps"),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{key}: history timeline</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>History of <code>{key}</code></h1>\n<p>{outcome}.</p>\n\
         <p>Replay: <code>{}</code></p>\n",
        escape(replay)
    )
}

/// `set c1-2 : done`; an operation of unknown outcome answers `?`.
fn describe<I: Display, O: Display>(op: &Operation<I, O>) -> String {
    match &op.output {
        Some(output) => format!("{} : {output}", op.input),
        None => format!("{} : ?", op.input),
    }
}

/// Nanoseconds since the history began, as milliseconds.
fn millis(nanos: u64) -> String {
    format!("{}.{:03} ms", nanos / 1_000_000, nanos / 1_000 % 1_000)
}

/// Text made safe for HTML, in element content and in quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

const LEGEND: &str =
    "<p class=\"legend\"><span class=\"op ordered\">#n in the longest order found</span> \
<span class=\"op stuck\">could not go next</span> \
<span class=\"op stuck overdue\">where the check failed</span> \
<span class=\"op open\">outcome unknown</span> \
<span class=\"op\">other</span> Hover a bar for its times.</p>\n";

const STYLE: &str = "body { font: 13px/1.4 system-ui, sans-serif; margin: 1em; color: #222; }
code { font: 12px ui-monospace, monospace; background: #f3f3f3; padding: 0 .3em; }
.chart { overflow-x: auto; border: 1px solid #ccc; }
.inner { position: relative; }
.ruler, .lane { position: relative; border-bottom: 1px solid #ddd; }
.ruler { height: 20px; font-size: 11px; color: #666; }
.ruler span { position: absolute; top: 3px; border-left: 1px solid #aaa; padding-left: 2px; white-space: nowrap; }
.who { position: sticky; left: 0; z-index: 2; width: 84px; height: 100%; padding-left: 6px;
  background: #fafafa; border-right: 1px solid #ccc; font-weight: 600; line-height: 22px; }
.op { position: absolute; height: 16px; box-sizing: border-box; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; font: 11px/14px ui-monospace, monospace; padding: 0 2px;
  background: #e4e4e4; border: 1px solid #999; border-radius: 3px; }
.op.ordered { background: #d8efd8; border-color: #5a5; }
.op.stuck { background: #fff0f0; border: 2px solid #d00; z-index: 1; }
.op.overdue { background: #fcc; border-width: 3px; }
.op.open { border-style: dashed; border-right: none; border-radius: 3px 0 0 3px;
  background-image: repeating-linear-gradient(135deg, transparent 0 4px, rgba(0,0,0,.08) 4px 8px); }
.legend .op { position: static; display: inline-block; height: auto; margin-right: .5em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; font-size: 12px; }
td:nth-child(5) { font-family: ui-monospace, monospace; }
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lincheck::check;
    use crate::lincheck::kv::{KvInput as In, KvModel, KvOutput as Out};

    use crate::lincheck::tests::{op, Op};

    /// Client 1 writes x and is answered; client 2 then reads nothing; client 3's write never
    /// returns.
    fn stale_read() -> (Vec<Op>, Vec<u64>) {
        let ops = vec![
            op(0, 1_000_000, In::Set("x".into()), Out::Done),
            op(2_000_000, 3_000_000, In::Get, Out::Value(None)),
            Operation {
                call: 500_000,
                ret: None,
                input: In::Set("<y&\"z\">".into()),
                output: None,
            },
        ];
        (ops, vec![1, 2, 3])
    }

    fn page(ops: &[Op], clients: &[u64], verdict: &Verdict) -> String {
        Timeline {
            key: "/k<0>",
            replay: "SIM_SEED=7 cargo test --features sim --test sim some_test",
            ops,
            clients,
            verdict,
        }
        .to_html()
    }

    #[test]
    fn the_stale_read_is_the_operation_marked() {
        let (ops, clients) = stale_read();
        let verdict = check(&KvModel, &ops, 1_000);
        let html = page(&ops, &clients, &verdict);
        assert_eq!(
            marks(ops.len(), &verdict),
            // The write that never returned may have happened: the order found takes it.
            vec![Mark::Ordered(1), Mark::Overdue, Mark::Ordered(2)]
        );
        assert!(html.contains("<div id=\"op1\" class=\"op stuck overdue\""));
        assert!(!html.contains("<div id=\"op0\" class=\"op stuck"));
        // Listed below the chart with its times.
        assert!(html.contains("<td><a href=\"#op1\">op 1</a></td><td>client 2</td><td>2.000 ms</td><td>3.000 ms</td><td>get : not found</td>"));
    }

    #[test]
    fn every_client_has_one_lane() {
        let (ops, clients) = stale_read();
        let verdict = check(&KvModel, &ops, 1_000);
        let html = page(&ops, &clients, &verdict);
        assert_eq!(html.matches("<div class=\"lane\"").count(), 3);
        for client in 1..=3 {
            assert_eq!(
                html.matches(&format!("<div class=\"who\">client {client}</div>"))
                    .count(),
                1
            );
        }
    }

    #[test]
    fn an_operation_of_unknown_outcome_runs_to_the_end() {
        let (ops, clients) = stale_read();
        let axis = Axis::new(&ops);
        assert_eq!(axis.columns(), 5);
        assert_eq!(axis.span(&ops[2]), (1, 5));
        let html = page(&ops, &clients, &Verdict::Linearizable);
        assert!(html.contains("class=\"op open\""));
        assert!(html.contains("never (outcome unknown)"));
    }

    #[test]
    fn text_is_escaped() {
        let (ops, clients) = stale_read();
        let html = page(&ops, &clients, &Verdict::Linearizable);
        assert!(html.contains("/k&lt;0&gt;"));
        assert!(html.contains("set &lt;y&amp;&quot;z&quot;&gt; : ?"));
        assert!(!html.contains("<y&"));
        assert!(!html.contains("k<0>"));
        assert_eq!(escape("a'b\nc"), "a&#39;b&#10;c");
    }

    #[test]
    fn a_client_that_went_on_after_a_timeout_gets_a_second_row() {
        // Open from column 0; the same client's next operations go below it.
        assert_eq!(
            rows([(0, 9), (2, 3), (4, 5), (5, 6)].into_iter()),
            vec![0, 1, 1, 2]
        );
    }

    #[test]
    fn only_the_tags_it_opens_are_in_the_page() {
        let (ops, clients) = stale_read();
        let verdict = check(&KvModel, &ops, 1_000);
        let html = page(&ops, &clients, &verdict);
        for tag in [
            "div", "table", "tr", "td", "details", "span", "p", "code", "a",
        ] {
            let opened = html.matches(&format!("<{tag}>")).count()
                + html.matches(&format!("<{tag} ")).count();
            let closed = html.matches(&format!("</{tag}>")).count();
            assert_eq!(
                opened, closed,
                "<{tag}> opened {opened} times, closed {closed}"
            );
        }
        assert!(!html.contains("<script"));
        assert!(!html.contains("http"));
    }
}
