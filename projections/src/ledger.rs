//! The `ledger` projection: countries (with GDP history), projects, users and the covenant
//! fund. A batch is first folded in memory into one change per row, then written with a
//! handful of `UNNEST` statements, so throughput is not one round trip per event.

use std::collections::BTreeMap;

use covenant_domain::{CountryEvent, ProjectEvent, UserEvent};
use covenant_personal::FORGOTTEN;
use sqlx::PgConnection;

use crate::event::{DomainEvent, ProjectedEvent};
use crate::ledger_sql::{
    CountryColumns, HistoryRow, ProjectColumns, RowChange, UserColumns, write_countries, write_history, write_projects,
    write_users,
};
use crate::projection::{Applied, Projection, Skipped, Tables};
use crate::views::Fund;

/// Projects countries, projects, users and the fund.
pub struct LedgerProjection;

#[derive(Default)]
struct FundDelta {
    total: i64,
    countries: i64,
    projects: i64,
    users: i64,
    created: i64,
}

/// One batch folded: row changes keyed by id, history rows, fund delta.
#[derive(Default)]
struct Fold {
    countries: BTreeMap<String, RowChange<CountryColumns>>,
    history: Vec<HistoryRow>,
    projects: BTreeMap<uuid::Uuid, RowChange<ProjectColumns>>,
    users: BTreeMap<uuid::Uuid, RowChange<UserColumns>>,
    fund: FundDelta,
    skipped: Vec<Skipped>,
}

/// The change of row `key` in this batch, moved to event `e`'s version, sequence and time.
fn change_for<'a, K: Ord, C: Default>(
    map: &'a mut BTreeMap<K, RowChange<C>>,
    key: K,
    e: &ProjectedEvent,
) -> &'a mut RowChange<C> {
    let row = map.entry(key).or_default();
    row.version = e.version as i64;
    row.last_seq = e.seq as i64;
    row.updated_at = e.occurred_at;
    row
}

fn usd(v: covenant_domain::Usd) -> i64 {
    // Usd is at most 10^16 (domain invariant), far below i64::MAX.
    i64::try_from(v.get()).unwrap_or(i64::MAX)
}

impl Fold {
    fn add(&mut self, e: &ProjectedEvent) {
        let skip = |reason: String| Skipped {
            seq: e.seq,
            subject: e.subject.clone(),
            event_type: e.event_type.clone(),
            reason,
        };
        match e.decode() {
            Ok(DomainEvent::Country(c)) => self.country(e, c),
            Ok(DomainEvent::Project(p)) => match uuid::Uuid::parse_str(&e.aggregate_id) {
                Ok(id) => self.project(e, id, p),
                Err(_) => self.skipped.push(skip("project id is not a UUID".into())),
            },
            Ok(DomainEvent::User(u)) => match uuid::Uuid::parse_str(&e.aggregate_id) {
                Ok(id) => self.user(e, id, u),
                Err(_) => self.skipped.push(skip("user id is not a UUID".into())),
            },
            Ok(DomainEvent::Security(_)) => {}
            Err(err) => self.skipped.push(skip(err.to_string())),
        }
    }

    fn country(&mut self, e: &ProjectedEvent, c: CountryEvent) {
        let code = e.aggregate_id.clone();
        let (gdp, delta) = match &c {
            CountryEvent::Registered(r) => (Some(usd(r.gdp_usd)), None),
            CountryEvent::GdpUpdated(u) => (Some(usd(u.new_gdp_usd)), Some(u.delta_bp)),
            CountryEvent::Renamed(_) => (None, None),
        };
        let row = change_for(&mut self.countries, code.clone(), e);
        match c {
            CountryEvent::Registered(r) => {
                row.created_in_batch = true;
                row.created_at = Some(e.occurred_at);
                row.columns.name = Some(r.name.as_str().to_owned());
                row.columns.gdp_usd = Some(usd(r.gdp_usd));
                self.fund.total += usd(r.gdp_usd);
                self.fund.countries += 1;
            }
            CountryEvent::GdpUpdated(u) => {
                row.columns.gdp_usd = Some(usd(u.new_gdp_usd));
                self.fund.total += usd(u.new_gdp_usd) - usd(u.old_gdp_usd);
            }
            CountryEvent::Renamed(r) => row.columns.name = Some(r.new_name.as_str().to_owned()),
        }
        if let Some(g) = gdp {
            self.history.push(HistoryRow {
                code,
                version: e.version as i64,
                seq: e.seq as i64,
                gdp: g,
                delta,
                at: e.occurred_at,
            });
        }
    }

    fn project(&mut self, e: &ProjectedEvent, id: uuid::Uuid, p: ProjectEvent) {
        let row = change_for(&mut self.projects, id, e);
        let cols = &mut row.columns;
        match p {
            ProjectEvent::Created(c) => {
                row.created_in_batch = true;
                row.created_at = Some(e.occurred_at);
                cols.country_code = Some(c.country_code.to_string());
                cols.name = Some(c.name.as_str().to_owned());
                cols.status = Some("proposed".into());
                cols.budget_usd = Some(usd(c.budget_usd));
                self.fund.projects += 1;
                self.fund.created += 1;
            }
            ProjectEvent::Updated(u) => {
                cols.name = u.name.map(|n| n.as_str().to_owned()).or(cols.name.take());
                cols.budget_usd = u.budget_usd.map(usd).or(cols.budget_usd);
                cols.status = u.status.map(|s| s.as_str().to_owned()).or(cols.status.take());
            }
            ProjectEvent::Deleted(_) => {
                cols.deleted_at = Some(e.occurred_at);
                self.fund.projects -= 1;
            }
        }
    }

    fn user(&mut self, e: &ProjectedEvent, id: uuid::Uuid, u: UserEvent) {
        let row = change_for(&mut self.users, id, e);
        let cols = &mut row.columns;
        match u {
            UserEvent::Registered(r) => {
                row.created_in_batch = true;
                row.created_at = Some(e.occurred_at);
                cols.email = Some(r.email.known().map_or(FORGOTTEN, |e| e.as_str()).to_owned());
                cols.role = Some(r.role.as_str().to_owned());
                self.fund.users += 1;
            }
            UserEvent::RoleChanged(c) => cols.role = Some(c.new_role.as_str().to_owned()),
            UserEvent::LoggedIn(l) => {
                cols.last_login_at = Some(e.occurred_at);
                cols.last_login_ip = Some(l.ip.known().map_or_else(|| FORGOTTEN.to_owned(), ToString::to_string));
            }
            UserEvent::LoggedOut(_) => cols.last_logout_at = Some(e.occurred_at),
            // Scrubbed: the event carries no personal data, and the key that opened the
            // earlier events is gone, so a rebuild writes the placeholder as well.
            UserEvent::Forgotten(_) => {
                cols.email = Some(FORGOTTEN.to_owned());
                // The address becomes the placeholder only where there was one (a row this
                // batch creates is known here; for an existing row the UPDATE decides).
                if cols.last_login_ip.is_some() || !row.created_in_batch {
                    cols.last_login_ip = Some(FORGOTTEN.to_owned());
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Projection for LedgerProjection {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["countries", "country_gdp_history", "projects", "users", "covenant_fund"]
    }

    fn init_sql(&self, tables: Tables) -> Vec<String> {
        vec![format!("INSERT INTO {} VALUES (1, 0, 0, 0, 0, 0, 0)", tables.name("covenant_fund"))]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        tables: Tables,
        events: &[ProjectedEvent],
    ) -> Result<Applied, sqlx::Error> {
        let mut fold = Fold::default();
        for e in events {
            fold.add(e);
        }
        let last_seq = events.last().map_or(0, |e| e.seq as i64);
        write_countries(conn, tables, std::mem::take(&mut fold.countries)).await?;
        write_history(conn, tables, std::mem::take(&mut fold.history)).await?;
        write_projects(conn, tables, std::mem::take(&mut fold.projects)).await?;
        write_users(conn, tables, std::mem::take(&mut fold.users)).await?;
        let d = &fold.fund;
        let sql = format!(
            "UPDATE {} SET total_usd = total_usd + $1, countries = countries + $2, projects = projects + $3,
                 users = users + $4, projects_created = projects_created + $5, as_of_seq = GREATEST(as_of_seq, $6)
             WHERE id = 1
             RETURNING total_usd, countries, projects, users, projects_created, as_of_seq",
            tables.name("covenant_fund")
        );
        let fund: Fund = sqlx::query_as(&sql)
            .bind(d.total)
            .bind(d.countries)
            .bind(d.projects)
            .bind(d.users)
            .bind(d.created)
            .bind(last_seq)
            .fetch_one(conn)
            .await?;
        Ok(Applied { skipped: fold.skipped, fund: Some(fund), projects_created: d.created as u64, gap: None })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;
    use covenant_domain::EventCodec;
    use covenant_domain::country::{CountryGdpUpdated, CountryRegistered, CountryRenamed};
    use covenant_domain::project::{ProjectCreated, ProjectDeleted, ProjectUpdated};
    use covenant_domain::{CountryCode, Name, ProjectStatus, Usd};

    use super::*;

    fn event(seq: u64, aggregate: &str, id: &str, version: u64, e: &impl EventCodec) -> ProjectedEvent {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Event-Id", format!("e{seq}").as_str());
        h.insert("Event-Type", e.type_name());
        h.insert("Aggregate-Version", version.to_string().as_str());
        h.insert("Occurred-At", format!("2026-11-22T10:00:{seq:02}Z").as_str());
        h.insert("Actor", "system");
        let at = chrono::Utc.timestamp_opt(0, 0).single().expect("epoch");
        ProjectedEvent::parse(seq, &format!("covenant.events.{aggregate}.{id}"), Some(&h), Bytes::from(e.encode()), at)
    }

    fn usd(v: u64) -> Usd {
        Usd::new(v).expect("usd")
    }

    #[test]
    fn a_batch_folds_each_country_into_one_row_change_and_a_fund_delta() {
        let mut f = Fold::default();
        let reg = CountryEvent::Registered(CountryRegistered {
            code: CountryCode::parse("FR").expect("code"),
            name: Name::parse("France").expect("name"),
            gdp_usd: usd(100),
        });
        let up = CountryEvent::GdpUpdated(CountryGdpUpdated {
            old_gdp_usd: usd(100),
            new_gdp_usd: usd(250),
            delta_bp: 15_000,
        });
        let ren = CountryEvent::Renamed(CountryRenamed {
            old_name: Name::parse("France").expect("name"),
            new_name: Name::parse("French Republic").expect("name"),
        });
        for (seq, v, e) in [(1, 1, &reg), (2, 2, &up), (3, 3, &ren)] {
            f.add(&event(seq, "country", "FR", v, e));
        }
        let row = &f.countries["FR"];
        assert!(row.created_in_batch);
        assert_eq!(
            (row.columns.name.as_deref(), row.columns.gdp_usd, row.version, row.last_seq),
            (Some("French Republic"), Some(250), 3, 3)
        );
        assert_eq!((f.fund.total, f.fund.countries), (250, 1));
        assert_eq!(
            f.history.iter().map(|h| (h.version, h.gdp, h.delta)).collect::<Vec<_>>(),
            [(1, 100, None), (2, 250, Some(15_000))]
        );
        assert!(f.skipped.is_empty());
    }

    #[test]
    fn project_updates_merge_and_a_delete_leaves_the_fund_count() {
        let id = uuid::Uuid::new_v4();
        let mut f = Fold::default();
        let created = ProjectEvent::Created(ProjectCreated {
            country_code: CountryCode::parse("FR").expect("code"),
            name: Name::parse("Rail").expect("name"),
            budget_usd: usd(5),
        });
        let status =
            ProjectEvent::Updated(ProjectUpdated { status: Some(ProjectStatus::Active), ..Default::default() });
        let budget = ProjectEvent::Updated(ProjectUpdated { budget_usd: Some(usd(9)), ..Default::default() });
        let deleted = ProjectEvent::Deleted(ProjectDeleted {});
        for (seq, e) in [(1, &created), (2, &status), (3, &budget), (4, &deleted)] {
            f.add(&event(seq, "project", &id.to_string(), seq, e));
        }
        let row = &f.projects[&id];
        let cols = &row.columns;
        assert_eq!(
            (cols.name.as_deref(), cols.status.as_deref(), cols.budget_usd),
            (Some("Rail"), Some("active"), Some(9))
        );
        assert!(cols.deleted_at.is_some(), "deleted_at set");
        assert_eq!((f.fund.projects, f.fund.created), (0, 1));
    }

    #[test]
    fn undecodable_events_are_skipped_with_their_reason() {
        let mut f = Fold::default();
        let reg = CountryEvent::Renamed(CountryRenamed {
            old_name: Name::parse("A").expect("name"),
            new_name: Name::parse("B").expect("name"),
        });
        let mut bad = event(7, "country", "FR", 2, &reg);
        bad.event_type = "country.exploded".into();
        f.add(&bad);
        f.add(&event(8, "project", "not-a-uuid", 1, &ProjectEvent::Deleted(ProjectDeleted {})));
        let reasons: Vec<(u64, &str)> = f.skipped.iter().map(|s| (s.seq, s.reason.as_str())).collect();
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].1.contains("unknown event type"), "{reasons:?}");
        assert_eq!(reasons[1], (8, "project id is not a UUID"));
        assert!(f.countries.is_empty() && f.projects.is_empty());
    }
}
