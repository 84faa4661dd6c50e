//! The response body: shared byte chunks sent without copying, as one frame, and a body held
//! compressed inflated a frame at a time for a client without gzip, a few scrapes at once. What
//! the chunks hold is `published`'s; which response carries them `respond`'s.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::gzip::Inflating;
use crate::published::{Refreshed, Scrape};

/// A body held compressed is inflated for as many plain scrapes at once as there are cores (at
/// least two); the others wait for a turn. Inflating is CPU work, which more at once would not
/// finish sooner, and each holds an inflater and its frames (some 300 KiB with the allocator's
/// slack, measured): however many plain scrapes come, they hold that many of those.
static TURNS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Semaphore::new(cores.max(2))
});
/// The longest a plain scrape waits for a turn before it inflates without one: a client that
/// stops reading keeps its turn until its connection closes, and must not hold up the others
/// for longer than this.
const TURN_WAIT: Duration = Duration::from_secs(5);

/// A turn to inflate, waited for: `None` once [`TURN_WAIT`] has passed without one.
type Waiting = Pin<Box<dyn Future<Output = Option<SemaphorePermit<'static>>> + Send>>;

/// A response body of shared byte chunks, sent without copying, all of them as one frame.
/// Hyper flushes its write queue once it holds 16 KiB (`max_buf_size`), so a frame per chunk
/// would cost a `writev` per chunk; one frame of many chunks goes out 64 of them per `writev`.
/// The chunks come in runs shared with the publication they belong to, so that a scrape of a
/// body in thousands of pieces copies no list of them. Hand-written: the body crates offer one
/// chunk (`Full`) or a stream of frames, and `bytes` chains two buffers, not a list.
pub(super) struct Payload {
    /// A body held compressed only, inflated a frame at a time before `chunks` are sent.
    inflating: Option<Inflating>,
    /// The turn `inflating` waits for before its first frame, then holds until it is done.
    waiting: Option<Waiting>,
    turn: Option<SemaphorePermit<'static>>,
    chunks: Option<Chunks>,
}

impl Payload {
    /// The chunks of `shared`, then those of `own`; empty chunks are skipped.
    fn new(shared: Arc<[Bytes]>, own: Vec<Bytes>) -> Payload {
        let chunks = Chunks::new(VecDeque::from([shared, own.into()]));
        Payload {
            inflating: None,
            waiting: None,
            turn: None,
            chunks: (chunks.remaining > 0).then_some(chunks),
        }
    }

    pub(super) fn own(chunks: Vec<Bytes>) -> Payload {
        Payload::new(Arc::new([]), chunks)
    }

    /// What `inflating` inflates, once it has a turn, then the chunks of `own`.
    fn inflated(inflating: Inflating, own: Vec<Bytes>) -> Payload {
        let waiting: Waiting = Box::pin(async {
            let turn = tokio::time::timeout(TURN_WAIT, TURNS.acquire()).await;
            turn.ok()?.ok()
        });
        Payload {
            inflating: (inflating.remaining() > 0).then_some(inflating),
            waiting: Some(waiting),
            ..Payload::own(own)
        }
    }
}

impl From<Scrape> for Payload {
    fn from(Scrape { body, after }: Scrape) -> Payload {
        match body {
            Refreshed::Chunks(chunks) => Payload::new(chunks, after),
            Refreshed::Inflating(inflating) => Payload::inflated(inflating, after),
        }
    }
}

impl Body for Payload {
    type Data = Chunks;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunks>, Infallible>>> {
        let this = self.get_mut();
        if let Some(inflating) = &mut this.inflating {
            if let Some(waiting) = &mut this.waiting {
                this.turn = std::task::ready!(waiting.as_mut().poll(context));
                this.waiting = None;
            }
            if let Some(chunk) = inflating.next_chunk() {
                let chunks = Chunks::new(VecDeque::from([Arc::from([chunk])]));
                return Poll::Ready(Some(Ok(Frame::data(chunks))));
            }
            this.inflating = None;
            this.turn = None;
        }
        Poll::Ready(this.chunks.take().map(|chunks| Ok(Frame::data(chunks))))
    }

    fn is_end_stream(&self) -> bool {
        self.inflating.is_none() && self.chunks.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let inflating = self.inflating.as_ref().map_or(0, Inflating::remaining);
        let chunks = self.chunks.as_ref().map_or(0, |c| c.remaining) as u64;
        SizeHint::with_exact(inflating + chunks)
    }
}

/// Runs of chunks read one after another.
#[derive(Debug)]
pub(super) struct Chunks {
    runs: VecDeque<Arc<[Bytes]>>,
    /// The chunk of the first run being sent, and how many of its bytes are sent; kept on a
    /// chunk with bytes left while any remain (see [`Chunks::settle`]).
    index: usize,
    sent: usize,
    remaining: usize,
}

impl Chunks {
    fn new(runs: VecDeque<Arc<[Bytes]>>) -> Chunks {
        let remaining = runs.iter().flat_map(|run| run.iter()).map(Bytes::len).sum();
        let mut chunks = Chunks {
            runs,
            index: 0,
            sent: 0,
            remaining,
        };
        chunks.settle();
        chunks
    }

    /// Moves past sent and empty chunks, and past runs with none left.
    fn settle(&mut self) {
        while let Some(run) = self.runs.front() {
            match run.get(self.index) {
                Some(chunk) if self.sent < chunk.len() => return,
                Some(_) => self.index += 1,
                None => {
                    self.runs.pop_front();
                    self.index = 0;
                }
            }
            self.sent = 0;
        }
    }

    /// The unsent chunks in order, the current one from where it stands.
    fn unsent(&self) -> impl Iterator<Item = &[u8]> {
        let current = self.runs.front().map(|run| &run[self.index][self.sent..]);
        let after = self.runs.iter().enumerate().flat_map(|(at, run)| {
            let skip = if at == 0 { self.index + 1 } else { 0 };
            run.iter().skip(skip).map(|chunk| &chunk[..])
        });
        current
            .into_iter()
            .chain(after)
            .filter(|chunk| !chunk.is_empty())
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.runs
            .front()
            .map_or(&[], |run| &run[self.index][self.sent..])
    }

    fn advance(&mut self, mut count: usize) {
        assert!(count <= self.remaining, "advanced past the end");
        self.remaining -= count;
        while count > 0 {
            let left = self.chunk().len();
            let step = count.min(left);
            self.sent += step;
            count -= step;
            self.settle();
        }
    }

    fn chunks_vectored<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slice, chunk) in slices.iter_mut().zip(self.unsent()) {
            *slice = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain scrapes of a body held compressed inflate it a few at a time: the next waits for
    /// a turn, and inflates without one once it has waited too long.
    #[tokio::test(start_paused = true)]
    async fn plain_scrapes_of_a_compressed_body_take_turns() {
        use crate::gzip::{Deflater, GzipHead};
        let text = "a{symbol=\"X\"} 1.0\n".repeat(5_000);
        let head = GzipHead::new([Deflater::new().deflate(text.as_bytes())]);
        let mut context = Context::from_waker(std::task::Waker::noop());
        // Whether the scrape sent a frame (or ended) rather than waited.
        let mut poll = |payload: &mut Payload| {
            let polled = Pin::new(payload).poll_frame(&mut context);
            polled.map(|frame| frame.map(|frame| frame.unwrap().into_data().unwrap().remaining()))
        };
        let mut scrapes: Vec<Payload> = (0..TURNS.available_permits())
            .map(|_| Payload::inflated(head.inflating(), Vec::new()))
            .collect();
        for scrape in &mut scrapes {
            assert!(poll(scrape).is_ready(), "a turn each");
        }
        let mut next = Payload::inflated(head.inflating(), Vec::new());
        assert!(poll(&mut next).is_pending(), "waits");
        let mut sent = 0;
        while let Poll::Ready(Some(len)) = poll(&mut scrapes[0]) {
            sent += len;
        }
        assert_eq!(
            sent + 16 * 1024,
            text.len(),
            "the rest of the body, then the end"
        );
        let mut last = Payload::inflated(head.inflating(), Vec::new());
        assert!(poll(&mut next).is_ready(), "the turn of the one that ended");
        assert!(poll(&mut last).is_pending(), "waits");
        tokio::time::advance(TURN_WAIT).await;
        assert!(poll(&mut last).is_ready(), "without a turn");
    }

    #[test]
    fn payload_is_one_frame_of_its_chunks_and_reports_its_exact_size() {
        let shared: Arc<[Bytes]> = Arc::new([
            Bytes::new(),
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
        ]);
        let mut payload = Payload::new(shared, vec![Bytes::new(), Bytes::from_static(b"fgh")]);
        assert_eq!(payload.size_hint().exact(), Some(8));
        let waker = std::task::Waker::noop();
        let mut context = Context::from_waker(waker);
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut payload).poll_frame(&mut context) else {
            panic!("a frame");
        };
        assert!(payload.is_end_stream());
        assert_eq!(payload.size_hint().exact(), Some(0));
        let mut chunks = frame.into_data().expect("data");
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(chunks.chunks_vectored(&mut slices), 2);
        assert_eq!((&*slices[0], &*slices[1]), (&b"abc"[..], &b"de"[..]));
        chunks.advance(4);
        assert_eq!((chunks.remaining(), chunks.chunk()), (4, &b"e"[..]));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(chunks.chunks_vectored(&mut slices), 2);
        assert_eq!(&*slices[1], b"fgh");
        assert_eq!(chunks.copy_to_bytes(4), Bytes::from_static(b"efgh"));
        assert!(Payload::own(vec![Bytes::new()]).is_end_stream());
    }
}
