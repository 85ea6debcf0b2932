use super::*;
use chrono::TimeZone;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("time")
}

fn region(name: &str, health: Health) -> RegionView {
    RegionView { name: name.into(), health, weight: 1, fenced: false, witness: None }
}

fn inputs(eu: Health, us: Health) -> Inputs {
    Inputs {
        active: "eu".into(),
        regions: vec![region("eu", eu), region("us", us)],
        mode: FailoverMode::Automatic,
        cooldown: Duration::from_secs(600),
        require_witness: false,
        now: at(1000),
        last_move: None,
        request: None,
        busy: false,
    }
}

fn request(action: RequestAction, to: &str) -> Option<FailoverRequest> {
    Some(FailoverRequest { id: "r1".into(), action, to: to.into() })
}

#[test]
fn a_down_active_region_fails_over_to_the_healthy_standby() {
    assert_eq!(decide(&inputs(Health::Healthy, Health::Healthy)), Decision::Stay);
    assert_eq!(decide(&inputs(Health::Unknown, Health::Healthy)), Decision::Stay);
    match decide(&inputs(Health::Down, Health::Healthy)) {
        Decision::Failover { to, reason } => {
            assert_eq!(to, "us");
            assert!(reason.contains("eu failed its health probes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_heaviest_healthy_unfenced_standby_wins() {
    let mut i = inputs(Health::Down, Health::Healthy);
    i.regions.push(RegionView { weight: 5, ..region("ap", Health::Healthy) });
    i.regions.push(RegionView { weight: 9, fenced: true, ..region("sa", Health::Healthy) });
    i.regions.push(RegionView { weight: 9, ..region("af", Health::Unknown) });
    assert!(matches!(decide(&i), Decision::Failover { to, .. } if to == "ap"));
    i.regions[2].weight = 1;
    assert!(matches!(decide(&i), Decision::Failover { to, .. } if to == "us"), "ties go to spec order");
}

#[test]
fn blocked_without_a_healthy_standby_within_cooldown_and_by_the_witness() {
    let none = decide(&inputs(Health::Down, Health::Unknown));
    assert!(matches!(none, Decision::Blocked { why: Blocked::NoHealthyStandby, .. }), "{none:?}");

    let mut i = inputs(Health::Down, Health::Healthy);
    i.last_move = Some(at(900));
    assert!(matches!(decide(&i), Decision::Blocked { why: Blocked::Cooldown, .. }));
    i.now = at(1500);
    assert!(matches!(decide(&i), Decision::Failover { .. }), "after the cooldown");

    let mut w = inputs(Health::Down, Health::Healthy);
    w.require_witness = true;
    assert!(matches!(decide(&w), Decision::Blocked { why: Blocked::NoWitness, .. }));
    w.regions[0].witness = Some(true);
    match decide(&w) {
        Decision::Blocked { why: Blocked::WitnessSeesPrimary, message } => {
            assert!(message.contains("witness"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    w.regions[0].witness = Some(false);
    assert!(matches!(decide(&w), Decision::Failover { .. }), "the witness confirms");
}

#[test]
fn manual_mode_only_recommends() {
    let mut i = inputs(Health::Down, Health::Healthy);
    i.mode = FailoverMode::Manual;
    assert!(matches!(decide(&i), Decision::Recommend { to, .. } if to == "us"));
    i.request = request(RequestAction::Failover, "us");
    assert!(matches!(decide(&i), Decision::Failover { to, reason } if to == "us" && reason.contains("r1")));
}

#[test]
fn requests_are_checked() {
    let mut i = inputs(Health::Healthy, Health::Healthy);
    i.request = request(RequestAction::Switchover, "us");
    assert_eq!(decide(&i), Decision::Switchover { to: "us".into() });
    let refused = |i: &Inputs| match decide(i) {
        Decision::Refuse { message } => message,
        other => panic!("{other:?}"),
    };
    i.request = request(RequestAction::Switchover, "eu");
    assert!(refused(&i).contains("already active"));
    i.request = request(RequestAction::Switchover, "mars");
    assert!(refused(&i).contains("eu, us"));
    i.regions[1].health = Health::Down;
    i.request = request(RequestAction::Switchover, "us");
    assert!(refused(&i).contains("region us is Down"));
    i.request = request(RequestAction::Failover, "us");
    assert!(refused(&i).contains("cannot take over"));
    i.regions[1].health = Health::Healthy;
    i.regions[0].health = Health::Down;
    i.request = request(RequestAction::Switchover, "us");
    assert!(refused(&i).contains("use failover"));
    i.busy = true;
    assert!(refused(&i).contains("running"));
    // A person's failover ignores the cooldown and the witness.
    let mut f = inputs(Health::Healthy, Health::Healthy);
    f.require_witness = true;
    f.last_move = Some(at(999));
    f.request = request(RequestAction::Failover, "us");
    assert!(matches!(decide(&f), Decision::Failover { .. }));
}
