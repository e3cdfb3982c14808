//! The commands benchmark's table, its ratios and its targets (issue 18), each marked MET or
//! NOT MET with the numbers.

use super::Profile;
use crate::Figures;

/// One system in one profile, over all rounds.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The durability profile (or `postgres-es`).
    pub(crate) profile: String,
    /// The system measured.
    pub(crate) system: String,
    /// Stored commands per second, p50 and p99 of stored commands.
    pub(crate) figures: Figures,
    /// Commands refused by a conflict (after the bus's retries, for Covenant).
    pub(crate) conflicts: u64,
}

impl Row {
    /// The row as a table line.
    pub(crate) fn line(&self) -> String {
        format!(
            "{:<22} {:<30} {:>9.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms   conflicts {}",
            self.profile,
            self.system,
            self.figures.per_sec,
            self.figures.p50.as_secs_f64() * 1e3,
            self.figures.p99.as_secs_f64() * 1e3,
            self.conflicts
        )
    }

    fn is_grouped(&self) -> bool {
        self.system.starts_with("covenant, group commit")
    }
}

/// Every row of the run, in order.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) rows: Vec<Row>,
}

impl Table {
    pub(crate) fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn find(&self, profile: &str, pick: impl Fn(&Row) -> bool) -> Option<&Row> {
        self.rows.iter().find(|r| r.profile == profile && pick(r))
    }

    /// The whole table, then each target with its figure. Covenant is judged as it is
    /// deployed in each profile: with group commit at sync always, without it elsewhere
    /// (where nats-server's on-disk staging of each batch costs more than it saves).
    pub(crate) fn print_summary(&self) {
        println!("\nsummary (commands stored per second over all rounds; p50/p99 of stored commands)");
        for r in &self.rows {
            println!("  {}", r.line());
        }
        let postgres_es = self.find("postgres-es", |_| true).map(|r| r.figures.per_sec);
        println!("\ntargets (covenant as deployed: group commit at sync always only)");
        for profile in self.profiles() {
            let raw = self.find(&profile, |r| r.system == "raw JetStream").map(|r| r.figures.per_sec);
            let alone = self.find(&profile, |r| r.system == "covenant");
            let grouped = self.find(&profile, Row::is_grouped);
            if let (Some(a), Some(g)) = (alone, grouped) {
                println!(
                    "  {profile}: group commit / each append alone: {:.2}x",
                    g.figures.per_sec / a.figures.per_sec
                );
            }
            // The managed profile this row names (none for an external server).
            let kind = [Profile::Default, Profile::Always, Profile::R3].into_iter().find(|p| p.label() == profile);
            let strict = kind == Some(Profile::Always);
            let Some(deployed) = (if strict { grouped } else { alone }) else { continue };
            let d = deployed.figures.per_sec;
            if let Some(es) = postgres_es {
                println!("  {profile}: covenant / postgres-es: {:.2}x", d / es);
            }
            match kind {
                Some(Profile::Default) => {
                    if let Some(raw) = raw {
                        mark("covenant / raw JetStream at default sync >= 0.80x", d / raw, 0.8);
                    }
                }
                Some(Profile::Always) => {
                    if let Some(raw) = raw {
                        mark("covenant >= 4x per-message raw publish at sync always", d / raw, 4.0);
                    }
                    let p50 = deployed.figures.p50.as_secs_f64() * 1e3;
                    let verdict = if p50 <= 5.0 { "MET" } else { "NOT MET" };
                    println!("  p50 <= 5 ms at sync always: {p50:.2} ms {verdict}");
                    if let Some(es) = postgres_es {
                        mark("matched strict durability: covenant >= 3x postgres-es", d / es, 3.0);
                    }
                }
                Some(Profile::R3) => {
                    if let Some(es) = postgres_es {
                        mark("R3: covenant >= 10x postgres-es", d / es, 10.0);
                    }
                }
                None => {}
            }
        }
    }

    /// The profiles measured, in order.
    pub(crate) fn profiles(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r.profile) {
                out.push(r.profile.clone());
            }
        }
        out
    }
}

fn mark(what: &str, ratio: f64, floor: f64) {
    let verdict = if ratio >= floor { "MET" } else { "NOT MET" };
    println!("  {what}: {ratio:.2}x {verdict}");
}
