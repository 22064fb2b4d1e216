//! The simulator's own plumbing: simulated TCP behaves like TCP, and a seed replays exactly.

use std::time::Duration;

use etcd::runtime::sim::SimHost;
use etcd::runtime::Host;
use http_body_util::{BodyExt, Full};

/// Requests on one long-lived connection keep the link's latency: empty packets from hyper's
/// flushes once queued behind each other and made every request wait longer than the last,
/// until heartbeats took seconds and members lost their leader.
#[test]
fn a_long_lived_connection_stays_fast() {
    let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
    rt.block_on(async {
        let handle = madsim::runtime::Handle::current();
        let server = handle.create_node().ip([10, 0, 0, 1].into()).build();
        let client = handle.create_node().ip([10, 0, 0, 2].into()).build();
        server.spawn(async {
            let host = SimHost::new(Duration::ZERO);
            let listener = host.listen("0.0.0.0:80").await.expect("binds");
            etcd::net::serve(
                host,
                listener,
                etcd::net::CLIENT_CONNECTIONS,
                None,
                |_| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(etcd::net::full("ok")))
                },
            )
            .await;
        });
        client
            .spawn(async {
                madsim::time::sleep(Duration::from_millis(100)).await;
                let host = SimHost::new(Duration::ZERO);
                let mut sender: etcd::net::Sender<Full<bytes::Bytes>> =
                    etcd::net::Connector::plain()
                        .dial(
                            &host,
                            &"http://10.0.0.1:80".parse().unwrap(),
                            Duration::from_secs(1),
                        )
                        .await
                        .expect("connects");
                let mut slowest = Duration::ZERO;
                for _ in 0..300 {
                    let started = host.elapsed();
                    sender.ready().await.expect("ready");
                    let request = hyper::Request::post("/")
                        .body(Full::new(bytes::Bytes::from_static(b"hello")))
                        .expect("a request");
                    let response = sender.send_request(request).await.expect("answered");
                    let _ = response.into_body().collect().await;
                    slowest = slowest.max(host.elapsed() - started);
                }
                assert!(
                    slowest < Duration::from_millis(50),
                    "a request took {slowest:?} on a link of at most 10 ms each way"
                );
            })
            .await
            .expect("the client ran");
    });
}

/// madsim's own check: the run is made twice, on fresh threads, and every draw from the seeded
/// RNG must come at the same point. It caught a draw that depended on raft-rs's unseeded one.
#[test]
fn a_seed_draws_the_same_numbers_every_time() {
    fn run(
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::run::Report, String>>>>
    {
        let mut plan = crate::scenarios::plan(3);
        plan.duration = Duration::from_secs(5);
        Box::pin(crate::run::simulate(plan))
    }
    let report = madsim::runtime::Runtime::check_determinism(42, madsim::Config::default(), run);
    assert!(report.is_ok(), "{report:?}");
}
