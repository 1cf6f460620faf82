//! The "drive it yourself" mode: a `Driver` stepped on the test's thread.
#![allow(clippy::disallowed_methods)] // the test spawns a thread itself

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{LOCAL, local, server};
use krpc_std::{Dictionary, Driver, Event, OpId, Query, QueryError, Reply};

/// Steps `driver` until `op` finishes, handing every other event to `other`.
fn run_until_done(
    driver: &mut Driver,
    op: OpId,
    mut other: impl FnMut(&mut Driver, Event),
) -> Result<Reply, QueryError> {
    // Bounded: each step waits at most 50 ms, and the query times out after 2 s.
    for _ in 0..1000 {
        driver.step(Some(Duration::from_millis(50))).unwrap();
        while let Some(event) = driver.endpoint_mut().poll_event() {
            match event {
                Event::QueryDone { op: done, result } if done == op => return result,
                event => other(driver, event),
            }
        }
    }
    panic!("query never finished");
}

#[test]
fn manual_driver_queries_a_threaded_one() {
    let server = server(local());
    let mut driver = local().bind_driver(LOCAL).unwrap();
    let now = driver.now();
    let echo = Query::new("echo", Dictionary::new().with_int("hello", 5)).unwrap();
    let op = driver.endpoint_mut().query(now, server.local_addr(), echo).unwrap();
    let reply = run_until_done(&mut driver, op, |_, _| {}).unwrap();
    assert_eq!(reply.values().unwrap().get(b"hello").unwrap().as_int(), Some(5));
    assert_eq!(reply.id(), Some(server.id()));
}

#[test]
fn manual_driver_answers_incoming_queries_and_polls_without_waiting() {
    let mut driver = local().bind_driver(LOCAL).unwrap();
    let addr = driver.local_addr();
    let client = local().bind(LOCAL).unwrap();
    let (done, finished) = mpsc::channel();
    let asker = std::thread::spawn(move || {
        let reply = client.query(addr, Query::new("echo", Dictionary::new()).unwrap());
        done.send(()).unwrap();
        reply.map(|r| r.values().and_then(|v| v.get(b"answer")).and_then(|v| v.as_int()))
    });
    let mut answered = 0;
    while finished.try_recv().is_err() {
        // A zero timeout polls the socket; the pause is the "rest of the application".
        driver.step(Some(Duration::ZERO)).unwrap();
        while let Some(event) = driver.endpoint_mut().poll_event() {
            if let Event::Query(query) = event {
                driver.endpoint_mut().respond(query.reply_to(), Dictionary::new().with_int("answer", 42), &[]).unwrap();
                answered += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    driver.flush();
    assert_eq!(asker.join().unwrap().unwrap(), Some(42));
    assert_eq!(answered, 1);
}
