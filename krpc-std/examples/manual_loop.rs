//! The "drive it yourself" mode: a `Driver` stepped by the application's own loop.
//!
//! A threaded node runs on 127.0.0.1 as the rest of the network; the manual node joins it,
//! answers the queries it receives, and stops once its bootstrap lookup and a ping are done.
//!
//! ```text
//! cargo run -p krpc-std --example manual_loop
//! ```
#![allow(clippy::print_stdout)] // an example talks to its user

use std::time::Duration;

use krpc_std::{Builder, Config, Dictionary, Event, Krpc, Query};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The network: one node on its own thread, answering `find_node` with what it knows.
    let network = Krpc::bind("127.0.0.1:0", Config::default())?;
    network.on_query(|query, responder| {
        let nodes = match query.args().target() {
            Some(target) => responder.endpoint().routing_table().closest(&target, 8),
            None => Default::default(),
        };
        let _ = responder.respond(Dictionary::new(), &nodes);
    })?;

    let bootstrap = network.local_addr().to_string();
    let mut driver = Builder::new(Config::default()).bootstrap_host(&bootstrap).bind_driver("127.0.0.1:0")?;
    println!("manual node {} on {}", driver.endpoint().id(), driver.local_addr());

    // Commands go to the endpoint, with the driver's clock; the next step sends them.
    let now = driver.now();
    let joining = driver.endpoint_mut().bootstrap(now)?;
    let pinging = driver.endpoint_mut().query(now, network.local_addr(), Query::ping())?;
    let mut pending = 2;

    while pending > 0 {
        // Wait for at most 50 ms (the application could do other work between steps).
        driver.step(Some(Duration::from_millis(50)))?;
        // Drain every event after each step: while events wait, `step` does not sleep.
        while let Some(event) = driver.endpoint_mut().poll_event() {
            match event {
                Event::Query(query) => {
                    println!("query {:?} from {}", String::from_utf8_lossy(query.method()), query.from());
                    driver.endpoint_mut().error(query.reply_to(), 204, b"Method Unknown")?;
                }
                Event::QueryDone { op, result } if op == pinging => {
                    match result {
                        Ok(reply) => println!("pong from {}", reply.from()),
                        Err(e) => println!("ping failed: {e}"),
                    }
                    pending -= 1;
                }
                Event::LookupDone { op, replies, closest, .. } if op == joining => {
                    println!("joined: {replies} replies, {} nodes closest to us", closest.len());
                    pending -= 1;
                }
                Event::NodeAdded(node) => println!("routing table + {} at {}", node.id, node.addr),
                other => println!("{other:?}"),
            }
        }
    }
    println!("routing table: {} nodes", driver.endpoint().routing_table().len());
    Ok(())
}
