//! Stack traces for panicking workers.
//!
//! A backtrace can only be taken while the panic unwinds, so a process-wide hook (installed
//! once, chaining to the previous hook) records it in a thread-local when the panic happens
//! inside a job's poll; the job's `catch_unwind`, on the same thread, takes it from there.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
    static TRACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_JOB.with(Cell::get) {
                let trace = Backtrace::force_capture().to_string();
                TRACE.with(|t| *t.borrow_mut() = Some(trace));
            }
            previous(info);
        }));
    });
}

/// Takes the trace recorded for the last panic on this thread.
pub(crate) fn take_trace() -> String {
    IN_JOB.with(|f| f.set(false));
    TRACE.with(|t| t.borrow_mut().take()).unwrap_or_default()
}

/// Marks the thread as inside a job while the inner future is polled.
pub(crate) struct Traced<F: ?Sized>(pub(crate) Pin<Box<F>>);

impl<F: Future + ?Sized> Future for Traced<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        IN_JOB.with(|f| f.set(true));
        let out = self.0.as_mut().poll(cx);
        IN_JOB.with(|f| f.set(false));
        out
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
