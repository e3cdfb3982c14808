//! Demo data: 142 countries and their GDP from 1952 to 2007 (Gapminder, CC BY 4.0; see
//! `ops/data/README.md`). Each country is registered with its 1952 figure, and the later
//! figures are recorded in one atomic `RecordGdpHistory` command (eleven `country.update`
//! events). Re-running skips what is already there.

use anyhow::{Context, Result, bail};
use covenant_commands::{CommandContext, CommandError, CommandSide};
use covenant_domain::{CountryCode, CountryCommand, Name, Usd};
use futures::{StreamExt, TryStreamExt};

/// The committed demo data set (code,name,year,gdp_usd; sorted by code then year).
pub const GDP_CSV: &str = include_str!("../data/gdp.csv");

/// One country's demo figures.
#[derive(Debug, Clone)]
pub struct DemoCountry {
    /// ISO code.
    pub code: CountryCode,
    /// Gapminder's name.
    pub name: Name,
    /// (year, GDP) oldest first.
    pub gdp: Vec<(u16, Usd)>,
}

/// Parses [`GDP_CSV`].
///
/// # Errors
/// When a row is malformed (the file is committed, so this is a build defect).
pub fn demo_countries() -> Result<Vec<DemoCountry>> {
    let mut out: Vec<DemoCountry> = Vec::new();
    let mut rdr = csv::Reader::from_reader(GDP_CSV.as_bytes());
    for row in rdr.records() {
        let row = row?;
        let code = CountryCode::parse(&row[0]).with_context(|| format!("code {}", &row[0]))?;
        let year: u16 = row[2].parse()?;
        let gdp: Usd = row[3].parse().with_context(|| format!("gdp {}", &row[3]))?;
        match out.last_mut() {
            Some(c) if c.code == code => c.gdp.push((year, gdp)),
            _ => out.push(DemoCountry { code, name: Name::parse(&row[1])?, gdp: vec![(year, gdp)] }),
        }
    }
    Ok(out)
}

/// What a seeding run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeedReport {
    /// Countries registered now.
    pub registered: usize,
    /// Countries whose history was recorded now.
    pub histories: usize,
    /// Countries already complete.
    pub skipped: usize,
    /// Events appended.
    pub events: u64,
    /// The stream sequence after seeding (for read-your-writes).
    pub last_sequence: u64,
}

/// Seeds every demo country (16 at a time), calling `progress(done, total)`.
///
/// # Errors
/// The first command that fails for a reason other than "already done".
pub async fn seed(side: &CommandSide, progress: impl Fn(usize, usize)) -> Result<SeedReport> {
    let countries = demo_countries()?;
    let total = countries.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let reports: Vec<SeedReport> = futures::stream::iter(countries)
        .map(|c| async {
            let r = seed_one(side, c).await;
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            r
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    Ok(reports.into_iter().fold(SeedReport::default(), |a, r| SeedReport {
        registered: a.registered + r.registered,
        histories: a.histories + r.histories,
        skipped: a.skipped + r.skipped,
        events: a.events + r.events,
        last_sequence: a.last_sequence.max(r.last_sequence),
    }))
}

async fn seed_one(side: &CommandSide, c: DemoCountry) -> Result<SeedReport> {
    let ctx = CommandContext::system();
    let id = c.code.to_string();
    let version = side.countries.store().load(&id).await?.tip.version;
    let mut report = SeedReport::default();
    let Some(((_, first), rest)) = c.gdp.split_first() else { bail!("{id} has no figures") };
    if version == 0 {
        let cmd = CountryCommand::Register { code: c.code.clone(), name: c.name.clone(), gdp_usd: *first };
        let r = side.countries.execute(&id, cmd, &ctx).await.map_err(|e| anyhow::anyhow!("registering {id}: {e}"))?;
        report.registered = 1;
        report.events += 1;
        report.last_sequence = r.sequence;
    }
    if version <= 1 && !rest.is_empty() {
        let cmd = CountryCommand::RecordGdpHistory { gdp_usd: rest.iter().map(|(_, g)| *g).collect() };
        match side.countries.execute(&id, cmd, &ctx).await {
            Ok(r) => {
                report.histories = 1;
                report.events += r.event_ids.len() as u64;
                report.last_sequence = r.sequence;
            }
            Err(CommandError::Refused(e)) => bail!("recording {id}'s history: {e}"),
            Err(e) => bail!("recording {id}'s history: {e}"),
        }
    }
    if version > 1 {
        report.skipped = 1;
    }
    Ok(report)
}
