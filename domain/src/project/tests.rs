use cqrs_es::test::TestFramework;

use super::*;

struct Directory(Result<bool, String>);

#[async_trait::async_trait]
impl CountryDirectory for Directory {
    async fn is_registered(&self, _: &CountryCode) -> Result<bool, String> {
        self.0.clone()
    }
}

fn given(directory: Result<bool, String>) -> TestFramework<Project> {
    TestFramework::with(Arc::new(Directory(directory)) as ProjectServices)
}

fn name(s: &str) -> Name {
    Name::parse(s).expect("name")
}

fn created() -> ProjectEvent {
    ProjectEvent::Created(ProjectCreated {
        country_code: CountryCode::parse("FR").expect("code"),
        name: name("Rail"),
        budget_usd: Usd::new(2_500_000_000).expect("usd"),
    })
}

fn create() -> ProjectCommand {
    ProjectCommand::Create {
        country_code: CountryCode::parse("FR").expect("code"),
        name: name("Rail"),
        budget_usd: Usd::new(2_500_000_000).expect("usd"),
    }
}

fn update(n: Option<&str>, budget: Option<u64>, status: Option<ProjectStatus>) -> ProjectCommand {
    ProjectCommand::Update { name: n.map(name), budget_usd: budget.map(|b| Usd::new(b).expect("usd")), status }
}

#[test]
fn creating_a_project_in_a_registered_country_records_it() {
    given(Ok(true)).given_no_previous_events().when(create()).then_expect_events(vec![created()]);
}

#[test]
fn creating_a_project_in_an_unregistered_country_is_refused() {
    given(Ok(false))
        .given_no_previous_events()
        .when(create())
        .then_expect_error(ProjectError::UnknownCountry("FR".into()));
}

#[test]
fn creating_a_project_when_the_directory_is_down_reports_it() {
    given(Err("down".into()))
        .given_no_previous_events()
        .when(create())
        .then_expect_error(ProjectError::DirectoryUnavailable("down".into()));
}

#[test]
fn creating_an_existing_project_is_refused() {
    given(Ok(true)).given(vec![created()]).when(create()).then_expect_error(ProjectError::AlreadyExists);
}

#[test]
fn an_update_records_only_what_changed() {
    given(Ok(true))
        .given(vec![created()])
        .when(update(Some("Rail"), Some(3_000_000_000), Some(ProjectStatus::Active)))
        .then_expect_events(vec![ProjectEvent::Updated(ProjectUpdated {
            name: None,
            budget_usd: Some(Usd::new(3_000_000_000).expect("usd")),
            status: Some(ProjectStatus::Active),
        })]);
}

#[test]
fn an_update_that_changes_nothing_is_refused() {
    given(Ok(true))
        .given(vec![created()])
        .when(update(Some("Rail"), Some(2_500_000_000), Some(ProjectStatus::Proposed)))
        .then_expect_error(ProjectError::NothingToUpdate);
}

#[test]
fn status_never_moves_backwards() {
    let completed =
        ProjectEvent::Updated(ProjectUpdated { status: Some(ProjectStatus::Completed), ..Default::default() });
    given(Ok(true))
        .given(vec![created(), completed])
        .when(update(None, None, Some(ProjectStatus::Active)))
        .then_expect_error(ProjectError::StatusBackwards { from: "completed", to: "active" });
}

#[test]
fn updating_or_deleting_an_unknown_project_is_refused() {
    given(Ok(true))
        .given_no_previous_events()
        .when(update(Some("X"), None, None))
        .then_expect_error(ProjectError::NotFound);
    given(Ok(true)).given_no_previous_events().when(ProjectCommand::Delete).then_expect_error(ProjectError::NotFound);
}

#[test]
fn deleting_soft_deletes() {
    given(Ok(true))
        .given(vec![created()])
        .when(ProjectCommand::Delete)
        .then_expect_events(vec![ProjectEvent::Deleted(ProjectDeleted {})]);
}

#[test]
fn a_deleted_project_refuses_every_change() {
    let deleted = ProjectEvent::Deleted(ProjectDeleted {});
    given(Ok(true))
        .given(vec![created(), deleted.clone()])
        .when(update(Some("New"), None, None))
        .then_expect_error(ProjectError::Deleted);
    given(Ok(true))
        .given(vec![created(), deleted])
        .when(ProjectCommand::Delete)
        .then_expect_error(ProjectError::Deleted);
}

#[test]
fn ids_must_be_lower_case_uuids() {
    assert!(Project::validate_id("0b7c6a4e-2f1d-4c55-9a8e-6f0c2d9b1a11").is_ok());
    for bad in ["0B7C6A4E-2F1D-4C55-9A8E-6F0C2D9B1A11", "rail", "a.b", "*", ""] {
        assert!(Project::validate_id(bad).is_err(), "{bad}");
    }
}
