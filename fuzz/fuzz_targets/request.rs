//! One frame's payload through the port's term path, exactly as the loop
//! serves it before any Python runs: `terms::decode` (validation, then
//! `eetf`), `Request::from_term`, and the notice the port would send back
//! (`frame_error`, a `bad_request` reply, or the reply of a port that is not
//! set up yet), encoded as it would be written to the VM.
//!
//! Asserts: nothing panics; every notice encodes to a term that decodes
//! again; a reply carries the request's `Ref` unchanged (else the VM could
//! never match it); a term that decodes survives encoding and decoding
//! again; a request's fields are what the term says.

#![no_main]

use eetf::Term;
use libfuzzer_sys::fuzz_target;
use py_reactor_port::message::{
    Carrier, CloseReason, Notice, Request, RequestError, RequestFailure, Stats,
};
use py_reactor_port::terms;

mod common;
use common::canon;

/// Encodes a notice and checks that it decodes again.
fn sent(notice: &Notice) -> Term {
    let bytes = notice.encode();
    match terms::decode(&bytes) {
        Ok(t) => t,
        Err(e) => panic!("notice {notice:?} encodes to an undecodable term: {e}"),
    }
}

/// Checks a reply notice: `{reply, Ref, _}` with `Ref` as sent.
fn check_reply(notice: &Notice, reference: &Term) {
    let t = sent(notice);
    let Term::Tuple(t) = t else {
        panic!("reply is not a tuple")
    };
    assert_eq!(t.elements.len(), 3);
    assert_eq!(t.elements[0], terms::atom("reply"));
    assert_eq!(
        canon(&t.elements[1]),
        canon(reference),
        "the reply's Ref differs from the request's"
    );
}

fuzz_target!(|data: &[u8]| {
    let term = match terms::decode(data) {
        Ok(t) => t,
        Err(e) => {
            // The port answers the request the frame's head names, or sends
            // `{frame_error, Text}`.
            match Carrier::of_frame(data) {
                Some(Carrier::Reply(reference)) => check_reply(
                    &Notice::failed(reference.clone(), &RequestFailure::BadTerm(e.to_string())),
                    &reference,
                ),
                Some(Carrier::Handoff(conn_id)) => {
                    assert!(conn_id > 0);
                    sent(&Notice::Closed {
                        conn_id,
                        reason: CloseReason::BadTerm(e.to_string()),
                    });
                }
                None => {
                    sent(&Notice::FrameError(e.to_string()));
                }
            }
            return;
        }
    };
    // A frame that decodes has the head its term says.
    if let (Some(carrier), Term::Tuple(t)) = (Carrier::of_frame(data), &term) {
        match carrier {
            Carrier::Reply(reference) => assert_eq!(canon(&reference), canon(&t.elements[1])),
            Carrier::Handoff(conn_id) => assert_eq!(Some(conn_id), terms::as_u64(&t.elements[1])),
        }
    }
    // What was decoded is what the VM meant: it survives a round trip.
    let again = terms::decode(&terms::encode(&term)).expect("an encoded term decodes");
    assert_eq!(canon(&again), canon(&term), "term changed by encoding and decoding");

    match Request::from_term(term.clone()) {
        Err(RequestError::Unknown(text)) => {
            sent(&Notice::FrameError(format!("unknown message: {text}")));
        }
        Err(RequestError::BadHandoff { conn_id, reason }) => {
            assert!(conn_id > 0);
            sent(&Notice::Closed {
                conn_id,
                reason: CloseReason::BadTerm(reason),
            });
        }
        Err(e @ RequestError::Bad { .. }) => {
            let text = e.to_string();
            let RequestError::Bad { reference, .. } = e else {
                unreachable!()
            };
            let Term::Tuple(t) = &term else {
                panic!("a bad request that is not a tuple")
            };
            assert_eq!(
                canon(&reference),
                canon(&t.elements[1]),
                "bad_request names another Ref"
            );
            check_reply(
                &Notice::failed(reference.clone(), &RequestFailure::BadRequest(text)),
                &reference,
            );
        }
        Ok(request) => {
            let Term::Tuple(t) = &term else {
                panic!("a request that is not a tuple")
            };
            let fields = &t.elements;
            match request {
                Request::Handoff { conn_id, client_info, .. } => {
                    assert!(conn_id > 0);
                    assert_eq!(canon(&client_info), canon(&fields[2]));
                    sent(&Notice::Closed {
                        conn_id,
                        reason: CloseReason::NotSetUp,
                    });
                }
                Request::Stats { reference } => {
                    assert_eq!(canon(&reference), canon(&fields[1]));
                    check_reply(&Notice::stats(reference.clone(), &Stats::default()), &reference);
                }
                Request::Stop { reference } => {
                    assert_eq!(canon(&reference), canon(&fields[1]));
                    check_reply(&Notice::ok(reference.clone()), &reference);
                }
                Request::Setup { reference, options } => {
                    assert_eq!(canon(&reference), canon(&fields[1]));
                    if let Some(n) = options.max_connections {
                        assert!(n > 0);
                    }
                    check_reply(
                        &Notice::failed(reference.clone(), &RequestFailure::AlreadySetUp),
                        &reference,
                    );
                }
                Request::Exec { reference, .. } | Request::Eval { reference, .. } => {
                    assert_eq!(canon(&reference), canon(&fields[1]));
                    check_reply(
                        &Notice::failed(reference.clone(), &RequestFailure::NotSetUp),
                        &reference,
                    );
                }
                Request::LateReply { .. } => {}
                Request::Call { reference, args, .. } => {
                    assert_eq!(canon(&reference), canon(&fields[1]));
                    let list = Term::from(eetf::List::from(args));
                    assert_eq!(canon(&list), canon(&fields[4]), "call args differ from the term's list");
                    check_reply(
                        &Notice::failed(reference.clone(), &RequestFailure::NotSetUp),
                        &reference,
                    );
                }
                Request::Listen { listen_id, options } => {
                    assert!(listen_id > 0);
                    if let Some(pid) = &options.reactor_pid {
                        let Term::Map(m) = &fields[2] else { panic!("listen options that are not a map") };
                        assert!(m.map.values().any(|v| canon(v) == canon(pid)));
                    }
                }
                Request::ListenControl { reference, .. } => {
                    assert_eq!(canon(&reference), canon(&fields[1]));
                    check_reply(
                        &Notice::failed(reference.clone(), &RequestFailure::BadRequest("not listening".into())),
                        &reference,
                    );
                }
            }
        }
    }
});
