//! Leader election on a Lease against the emulated API: one leader at a time, a clean hand-over on
//! shutdown, and a leader that cannot renew steps down while a follower takes the expired lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use webhook_operator::clock::{SharedClock, SystemClock};
use webhook_operator::controller::leader::{Election, LeaderGuard, LeadershipLost, run_elected};
use webhook_operator::sandbox::kube::{ApiError, Emulator, EmulatorOptions, FaultAction, FaultRule};

use crate::support::poll::eventually;

fn election(identity: &str) -> Election {
    let mut e = Election::new("default", "webhook-operator", identity);
    e.lease_duration = Duration::from_secs(2);
    e.retry_period = Duration::from_millis(100);
    e.renew_deadline = Duration::from_millis(800);
    e
}

struct Contender {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), LeadershipLost>>,
}

fn contend(
    emu: &Emulator,
    identity: &str,
    leading: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
) -> Contender {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = emu.client();
    let clock: SharedClock = Arc::new(SystemClock);
    let name = identity.to_string();
    let guard = LeaderGuard::new();
    let task = tokio::spawn(run_elected(
        client,
        election(identity),
        clock,
        guard.clone(),
        async {
            let _ = stopped.await;
        },
        move |until| async move {
            // Counted down when the leading task ends, gracefully or aborted.
            struct Leading(Arc<AtomicUsize>);
            impl Drop for Leading {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let now = leading.fetch_add(1, Ordering::SeqCst) + 1;
            let _leading = Leading(leading);
            max.fetch_max(now, Ordering::SeqCst);
            assert!(guard.is_valid(), "the leader acts with a valid guard");
            log.lock().unwrap().push(name);
            let _ = until.await;
        },
    ));
    Contender { stop, task }
}

fn holder(emu: &Emulator) -> Option<String> {
    emu.get("coordination.k8s.io", "v1", "leases", "default", "webhook-operator")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

#[tokio::test]
async fn one_leader_hand_over_and_step_down() {
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let leading = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = contend(&emu, "replica-a", leading.clone(), max.clone(), log.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = contend(&emu, "replica-b", leading.clone(), max.clone(), log.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(holder(&emu).as_deref(), Some("replica-a"));
    assert_eq!(*log.lock().unwrap(), vec!["replica-a"]);

    // A shuts down: it releases the lease and B takes over long before the lease would expire.
    a.stop.send(()).unwrap();
    assert!(a.task.await.unwrap().is_ok());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(holder(&emu).as_deref(), Some("replica-b"));
    assert_eq!(*log.lock().unwrap(), vec!["replica-a", "replica-b"]);

    // C joins; B cannot renew any more (its writes fail): it steps down, C takes the expired lease.
    let c = contend(&emu, "replica-c", leading.clone(), max.clone(), log.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    emu.inject_fault(
        FaultRule::new(FaultAction::Fail(ApiError::new(500, "InternalError", "injected")))
            .methods(&[axum::http::Method::PUT])
            .path("/leases/webhook-operator$")
            .times(12),
    );
    let lost = tokio::time::timeout(Duration::from_secs(5), b.task)
        .await
        .unwrap()
        .unwrap();
    assert!(lost.is_err(), "B stepped down");
    eventually(
        "C took over",
        Duration::from_secs(6),
        Duration::from_millis(100),
        || async { (holder(&emu).as_deref() == Some("replica-c")).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*log.lock().unwrap(), vec!["replica-a", "replica-b", "replica-c"]);
    assert_eq!(max.load(Ordering::SeqCst), 1, "never two leaders at once");
    drop(b.stop);
    c.stop.send(()).unwrap();
    assert!(c.task.await.unwrap().is_ok());
    assert_eq!(holder(&emu), None, "released");
}

#[tokio::test]
async fn a_controller_that_ends_while_leading_gives_the_lease_up() {
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let guard = LeaderGuard::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        run_elected(
            emu.client(),
            election("replica-a"),
            clock,
            guard.clone(),
            std::future::pending::<()>(),
            |_stop| async { panic!("a bug in the controller") },
        ),
    )
    .await
    .expect("does not hang on to the lease");
    assert!(
        matches!(&outcome, Err(LeadershipLost::ControllerEnded(why)) if why == "it panicked"),
        "{outcome:?}"
    );
    assert!(!guard.is_valid());
    assert_eq!(holder(&emu), None, "released, so a follower takes over at once");
}
