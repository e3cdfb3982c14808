//! The User aggregate's decisions, given earlier events.

use cqrs_es::test::TestFramework;

use super::*;

type Given = TestFramework<User>;

fn actor(role: Role) -> Actor {
    Actor::User { id: uuid::Uuid::nil(), role }
}

fn registered(role: Role) -> UserEvent {
    UserEvent::Registered(UserRegistered {
        email: Personal::Known(Email::parse("ada@example.org").expect("email")),
        role,
    })
}

fn register(by: Actor) -> UserCommand {
    UserCommand::Register { email: Email::parse("ada@example.org").expect("email"), role: Role::Steward, actor: by }
}

#[test]
fn an_admin_or_the_system_registers_users() {
    Given::with(())
        .given_no_previous_events()
        .when(register(actor(Role::Admin)))
        .then_expect_events(vec![registered(Role::Steward)]);
    Given::with(())
        .given_no_previous_events()
        .when(register(Actor::System))
        .then_expect_events(vec![registered(Role::Steward)]);
}

#[test]
fn a_non_admin_cannot_register_users() {
    for role in [Role::Steward, Role::Viewer] {
        Given::with(()).given_no_previous_events().when(register(actor(role))).then_expect_error(UserError::NotAdmin);
    }
}

#[test]
fn registering_an_existing_user_is_refused() {
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(register(Actor::System))
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn only_admins_change_roles() {
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::ChangeRole { role: Role::Steward, actor: actor(Role::Admin) })
        .then_expect_events(vec![UserEvent::RoleChanged(UserRoleChanged {
            old_role: Role::Viewer,
            new_role: Role::Steward,
        })]);
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::ChangeRole { role: Role::Admin, actor: actor(Role::Steward) })
        .then_expect_error(UserError::NotAdmin);
}

#[test]
fn a_role_change_to_the_same_role_or_of_an_unknown_user_is_refused() {
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::ChangeRole { role: Role::Viewer, actor: Actor::System })
        .then_expect_error(UserError::RoleUnchanged("viewer"));
    Given::with(())
        .given_no_previous_events()
        .when(UserCommand::ChangeRole { role: Role::Viewer, actor: Actor::System })
        .then_expect_error(UserError::NotFound);
}

#[test]
fn logins_and_logouts_are_recorded_for_known_users_only() {
    let ip: IpAddr = "203.0.113.7".parse().expect("ip");
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::RecordLogin { ip })
        .then_expect_events(vec![UserEvent::LoggedIn(UserLoggedIn { ip: Personal::Known(ip) })]);
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::RecordLogout { token: None })
        .then_expect_events(vec![UserEvent::LoggedOut(UserLoggedOut::default())]);
    Given::with(())
        .given_no_previous_events()
        .when(UserCommand::RecordLogin { ip })
        .then_expect_error(UserError::NotFound);
    Given::with(())
        .given_no_previous_events()
        .when(UserCommand::RecordLogout { token: None })
        .then_expect_error(UserError::NotFound);
}

#[test]
fn the_login_payload_matches_the_audit_vector() {
    use crate::codec::EventCodec;
    let e = UserEvent::LoggedIn(UserLoggedIn { ip: Personal::Known("203.0.113.7".parse().expect("ip")) });
    assert_eq!(e.encode(), br#"{"ip":"203.0.113.7"}"#);
}

#[test]
fn only_an_admin_forgets_a_known_user_and_a_forgotten_user_refuses_everything() {
    let forgotten = UserEvent::Forgotten(UserForgotten {});
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::Forget { actor: actor(Role::Admin) })
        .then_expect_events(vec![forgotten.clone()]);
    Given::with(())
        .given(vec![registered(Role::Viewer)])
        .when(UserCommand::Forget { actor: actor(Role::Steward) })
        .then_expect_error(UserError::NotAdmin);
    Given::with(())
        .given_no_previous_events()
        .when(UserCommand::Forget { actor: Actor::System })
        .then_expect_error(UserError::NotFound);
    let ip: IpAddr = "203.0.113.7".parse().expect("ip");
    for command in [
        UserCommand::Forget { actor: Actor::System },
        UserCommand::RecordLogin { ip },
        UserCommand::RecordLogout { token: None },
        UserCommand::ChangeRole { role: Role::Admin, actor: Actor::System },
        register(Actor::System),
    ] {
        Given::with(())
            .given(vec![registered(Role::Viewer), forgotten.clone()])
            .when(command)
            .then_expect_error(UserError::Forgotten);
    }
}

#[test]
fn a_forgotten_user_has_no_role_and_its_state_holds_no_personal_data() {
    let mut user = User::default();
    cqrs_es::Aggregate::apply(&mut user, registered(Role::Admin));
    assert_eq!(user.role(), Some(Role::Admin));
    let state = serde_json::to_string(&user).expect("json");
    assert!(!state.contains("ada@"), "{state}");
    cqrs_es::Aggregate::apply(&mut user, UserEvent::Forgotten(UserForgotten {}));
    assert_eq!((user.role(), user.is_forgotten()), (None, true));
}

#[test]
fn an_event_read_without_its_key_decodes_with_the_field_withheld() {
    use crate::codec::EventCodec;
    let e = UserEvent::decode("user.registered", br#"{"email":null,"role":"viewer"}"#).expect("decodes");
    assert_eq!(e, UserEvent::Registered(UserRegistered { email: Personal::Withheld, role: Role::Viewer }));
    let e = UserEvent::decode("user.login", br#"{"ip":null}"#).expect("decodes");
    assert_eq!(e, UserEvent::LoggedIn(UserLoggedIn { ip: Personal::Withheld }));
}
