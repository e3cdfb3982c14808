//! A deterministic mixed workload over countries, projects and users, shared by the
//! projection tests.

use covenant_commands::{CommandContext, CommandError, CommandSide};
use covenant_domain::{Actor, CountryCommand, Email, Name, ProjectCommand, ProjectStatus, Role, Usd, UserCommand};

/// A refusal of any aggregate, as text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The ids a workload writes to.
pub struct Workload {
    /// Country codes.
    pub countries: Vec<String>,
    /// Project ids.
    pub projects: Vec<String>,
    /// User ids.
    pub users: Vec<String>,
}

fn usd(v: u64) -> Usd {
    Usd::new(v).expect("in range")
}

/// Registers 30 demo countries, 60 projects and 10 users.
pub async fn setup(side: &CommandSide) -> Workload {
    let ctx = CommandContext::system();
    let demo = covenant_ops::seed::demo_countries().expect("demo data");
    let mut countries = Vec::new();
    for c in demo.iter().take(30) {
        let cmd = CountryCommand::Register { code: c.code.clone(), name: c.name.clone(), gdp_usd: c.gdp[0].1 };
        side.countries.execute(c.code.as_str(), cmd, &ctx).await.expect("register country");
        countries.push(c.code.to_string());
    }
    let mut projects = Vec::new();
    for i in 0..60 {
        let id = uuid::Uuid::new_v4().to_string();
        let cmd = ProjectCommand::Create {
            country_code: demo[i % 30].code.clone(),
            name: Name::parse(&format!("Project {i}")).expect("name"),
            budget_usd: usd(1000 + i as u64),
        };
        side.projects.execute(&id, cmd, &ctx).await.expect("create project");
        projects.push(id);
    }
    let mut users = Vec::new();
    for i in 0..10 {
        let id = uuid::Uuid::new_v4().to_string();
        let cmd = UserCommand::Register {
            email: Email::parse(&format!("user{i}@example.org")).expect("email"),
            role: Role::Viewer,
            actor: Actor::System,
        };
        side.users.execute(&id, cmd, &ctx).await.expect("register user");
        users.push(id);
    }
    Workload { countries, projects, users }
}

/// Command `i` of the mix. Refusals (e.g. updating a project deleted earlier) are part of
/// the workload and append nothing; `Ok(None)` reports them.
pub async fn step(side: &CommandSide, w: &Workload, i: u64) -> Result<Option<u64>, CommandError<Refusal>> {
    let ctx = CommandContext::system();
    let (nc, np, nu) = (w.countries.len() as u64, w.projects.len() as u64, w.users.len() as u64);
    let country = &w.countries[(i % nc) as usize];
    let project = &w.projects[((i / 7) % np) as usize];
    let r = match i % 10 {
        0..=3 => side
            .countries
            .execute(country, CountryCommand::UpdateGdp { gdp_usd: usd(1_000_000 + i) }, &ctx)
            .await
            .map_err(stringify),
        4 => {
            let figures = (1..=3).map(|k| usd(2_000_000 + i * 10 + k)).collect();
            side.countries
                .execute(country, CountryCommand::RecordGdpHistory { gdp_usd: figures }, &ctx)
                .await
                .map_err(stringify)
        }
        5 | 6 => {
            let status = (i % 20 == 5).then_some(ProjectStatus::Active);
            let cmd = ProjectCommand::Update { name: None, budget_usd: Some(usd(5_000 + i)), status };
            side.projects.execute(project, cmd, &ctx).await.map_err(stringify)
        }
        7 => side
            .users
            .execute(
                &w.users[(i % nu) as usize],
                UserCommand::RecordLogin { ip: "203.0.113.7".parse().expect("ip") },
                &ctx,
            )
            .await
            .map_err(stringify),
        8 if i % 100 == 98 => side.projects.execute(project, ProjectCommand::Delete, &ctx).await.map_err(stringify),
        _ => side
            .countries
            .execute(
                country,
                CountryCommand::Rename { name: Name::parse(&format!("Country {i}")).expect("name") },
                &ctx,
            )
            .await
            .map_err(stringify),
    };
    match r {
        Ok(receipt) => Ok(Some(receipt.sequence)),
        Err(CommandError::Refused(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn stringify<E: std::error::Error>(e: CommandError<E>) -> CommandError<Refusal> {
    match e {
        CommandError::Refused(r) => CommandError::Refused(Refusal(r.to_string())),
        CommandError::InvalidInput(m) => CommandError::InvalidInput(m),
        CommandError::Conflict { attempts } => CommandError::Conflict { attempts },
        CommandError::InProgress => CommandError::InProgress,
        CommandError::Unavailable { reason, outcome_unknown } => CommandError::Unavailable { reason, outcome_unknown },
        CommandError::KeysUnavailable { reason } => CommandError::KeysUnavailable { reason },
        CommandError::Internal(m) => CommandError::Internal(m),
    }
}
