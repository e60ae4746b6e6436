//! One side of a proxied exchange: a TCP stream and the bytes read from it
//! that no framer has taken yet.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Bytes asked for per read. The buffer holds at most this much beyond
/// what a framer has not yet taken, because every read is framed before
/// the next one.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes asked for by the first read into an empty buffer. A request or
/// response that needs more gets [`READ_CHUNK`] from the next read on, so
/// small RPC calls and their responses, the usual case, take a smaller
/// allocation than large bodies.
const FIRST_READ: usize = 8 * 1024;

/// The deadline of a timeout too long to add to the clock: about 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Bytes read at a time while lingering; they are discarded.
const LINGER_READ_BYTES: usize = 16 * 1024;

/// An error on one side of an exchange.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error("no progress for {} seconds", .0.as_secs())]
    TimedOut(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A stream with its read buffer.
pub(super) struct Peer {
    stream: TcpStream,
    buffer: BytesMut,
    timer: ReadTimer,
    /// Whether the last read returned less than its room. tokio then
    /// cleared the readiness, so [`Peer::fill_more`] reads the socket first.
    short_read: bool,
}

impl Peer {
    pub fn new(stream: TcpStream) -> Self {
        Self { stream, buffer: BytesMut::new(), timer: ReadTimer::default(), short_read: false }
    }

    /// Returns the stream, dropping the read buffer. The caller checks
    /// that no buffered byte is lost.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Bytes read and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    /// Tells whether bytes were read and not consumed, or are waiting on the
    /// socket. The check peeks without consuming and does not wait.
    pub fn has_unread_bytes(&self) -> bool {
        !self.buffer.is_empty() || matches!(peek(&self.stream), Ok(read) if read > 0)
    }

    /// Takes the first `count` buffered bytes.
    pub fn consume(&mut self, count: usize) -> Bytes {
        self.buffer.split_to(count).freeze()
    }

    /// Reads more of a message whose first bytes were read, waiting at most
    /// `timeout`, as [`Peer::fill`] does.
    ///
    /// Linux ends a read at TCP's urgent mark with the bytes past it still
    /// queued, and that short read cleared tokio's readiness. A wait on the
    /// readiness would last until the peer sends again, and a client that
    /// sent its whole request waits for the response instead. So after a
    /// short read this reads the socket once without waiting. That costs
    /// one `recv` only when nothing has arrived yet. An RPC request usually
    /// arrives in one read, and when Odoo writes a response's head and body
    /// apart, the direct read usually finds the body already there.
    pub async fn fill_more(&mut self, timeout: Duration) -> Result<usize, StreamError> {
        if self.short_read {
            // tokio's own reads spend the task's budget, and this read
            // bypasses them. Without this, a peer that has sent more by
            // each next read keeps the other tasks on the thread waiting
            // until the message ends, because reading an RPC body awaits
            // nothing else.
            tokio::task::coop::consume_budget().await;
            reserve_for_read(&mut self.buffer);
            match recv_now(&self.stream, &mut self.buffer) {
                Ok(read) => {
                    self.short_read = is_short_read(read, &self.buffer);
                    return Ok(read);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.fill(timeout).await
    }

    /// Reads more bytes into the buffer, waiting at most `timeout`. Returns
    /// how many arrived; 0 means the peer closed its side.
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, StreamError> {
        if self.buffer.is_empty() {
            // Idle connections (thousands of them, at worst) hold no read
            // buffer while they wait: the buffer is allocated once bytes
            // are there to read.
            self.buffer = BytesMut::new();
        }
        let Self { stream, buffer, timer, short_read } = self;
        let read = async {
            loop {
                stream.readable().await?;
                reserve_for_read(buffer);
                match read_ready(stream, buffer).await {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        if buffer.is_empty() {
                            // Nothing arrived: wait without the buffer, as
                            // an idle connection does.
                            *buffer = BytesMut::new();
                        }
                        continue;
                    }
                    result => {
                        *short_read = matches!(result, Ok(read) if is_short_read(read, buffer));
                        return result;
                    }
                }
            }
        };
        timer.start(timeout);
        // The read goes first, so bytes that are already there are read
        // even when the timeout has passed, as with `tokio::time::timeout`.
        tokio::select! {
            biased;
            result = read => Ok(result?),
            () = timer.expired() => Err(StreamError::TimedOut(timeout)),
        }
    }

    /// Writes all of `bytes`, waiting at most `timeout`.
    pub async fn write_all(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), StreamError> {
        match tokio::time::timeout(timeout, self.stream.write_all(bytes)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StreamError::TimedOut(timeout)),
        }
    }

    /// Ends the connection after odoogate's own error response: closes the
    /// sending side, then reads and discards what the peer still sends for
    /// at most `time`. Closing a socket with unread bytes makes the kernel
    /// send RST, which can destroy the response before the peer reads it,
    /// and a client sending a body over the limit has such bytes in flight.
    pub async fn linger(&mut self, time: Duration) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + time;
        let mut scratch = vec![0; LINGER_READ_BYTES];
        loop {
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await;
            if !matches!(read, Ok(Ok(read)) if read > 0) {
                return;
            }
        }
    }

    /// Joins two streams after a protocol switch: the bytes each side sent
    /// early are delivered first, then both directions are copied until
    /// both sides close. There is no timeout, because a WebSocket stays
    /// open for as long as the page does.
    pub async fn splice(client: &mut Peer, upstream: &mut Peer) -> io::Result<(u64, u64)> {
        let early_from_upstream = upstream.buffer.split();
        client.stream.write_all(&early_from_upstream).await?;
        let early_from_client = client.buffer.split();
        upstream.stream.write_all(&early_from_client).await?;
        tokio::io::copy_bidirectional(&mut client.stream, &mut upstream.stream).await
    }
}

/// Reads the bytes waiting on the socket, or returns `WouldBlock` when
/// there are none. Unlike `try_read_buf`, tokio's `poll_read` (1.54, on
/// epoll and kqueue) clears the readiness after a read shorter than the
/// buffer's room, which means the socket is empty, so the next fill waits
/// without a `recv`. A read that fills the room or returns 0 keeps the
/// readiness.
///
/// Linux also ends a read at TCP's urgent mark with bytes still queued;
/// [`Peer::fill_more`] reads past it.
///
/// NOTE: a mark right at the end of one message, with the next message
/// already queued behind it (pipelined), still leaves that message waiting
/// for the client's next segment or the request timeout. Asking the socket
/// after every message would cost each kept-alive call a `recv`. HTTP has
/// no use for urgent data.
async fn read_ready(stream: &mut TcpStream, buffer: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|context| {
        let read = std::pin::pin!(stream.read_buf(buffer));
        match read.poll(context) {
            // The task's tokio budget is spent, and `poll_read` has
            // scheduled the task again: yield. `WouldBlock` would make
            // `fill` retry at once, and forever, because `readable`
            // ignores the budget and the readiness is still set.
            Poll::Pending if !tokio::task::coop::has_budget_remaining() => Poll::Pending,
            Poll::Pending => Poll::Ready(Err(io::ErrorKind::WouldBlock.into())),
            ready => ready,
        }
    })
    .await
}

/// The timeout of a peer's reads.
///
/// A `tokio::time::timeout` per read registered a new timer each time. When
/// its deadline came before the earliest one tokio's time driver had
/// planned its wait for, the driver woke its own thread: an `eventfd` write
/// and one more `epoll_wait`. A client's read after the wait for Odoo's
/// response (whose timeout is longer) did so once per call. This timer
/// stays registered between reads. A later deadline leaves it where it is,
/// and when it fires before the deadline it moves on to it. Only an
/// earlier deadline moves it back.
#[derive(Default)]
struct ReadTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
}

impl ReadTimer {
    /// Sets the deadline of the next wait to `timeout` from now.
    fn start(&mut self, timeout: Duration) {
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or_else(|| now + FAR_FUTURE);
        self.deadline = Some(deadline);
        match &mut self.sleep {
            Some(sleep) if sleep.deadline() <= deadline => {}
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// Completes at the deadline that [`Self::start`] set last.
    async fn expired(&mut self) {
        let (Some(sleep), Some(deadline)) = (&mut self.sleep, self.deadline) else {
            return;
        };
        loop {
            sleep.as_mut().await;
            if Instant::now() >= deadline {
                return;
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

/// Makes room in `buffer` for the next read: [`FIRST_READ`] bytes for a new
/// message, [`READ_CHUNK`] for the rest of one. The size follows the bytes
/// held, not the capacity. A read that found nothing (readiness left over
/// from the last message) leaves an empty buffer with room, which must not
/// grow to `READ_CHUNK` and copy its unused room on the retry.
fn reserve_for_read(buffer: &mut BytesMut) {
    let reserved = if buffer.is_empty() { FIRST_READ } else { READ_CHUNK };
    buffer.reserve(reserved);
}

/// Tells whether a read of `read` bytes into `buffer` was shorter than its
/// room. tokio clears the socket's readiness after such a read of its own.
/// A read of 0 bytes is the peer's close, not a short read.
fn is_short_read(read: usize, buffer: &BytesMut) -> bool {
    read > 0 && buffer.capacity() > buffer.len()
}

/// Reads the bytes waiting on the socket into `buffer`'s spare room without
/// waiting and without tokio's readiness, which a short read cleared.
/// `WouldBlock` means none are waiting. Like a plain `recv`, the read skips
/// an urgent byte and goes on past the mark.
fn recv_now(stream: &TcpStream, buffer: &mut BytesMut) -> io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let room = buffer.spare_capacity_mut();
    // SAFETY: the descriptor is the stream's open socket, and `room` is
    // writable memory of its length, which `recv` writes at most.
    let read = unsafe { libc::recv(stream.as_raw_fd(), room.as_mut_ptr().cast(), room.len(), libc::MSG_DONTWAIT) };
    let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: `recv` initialized the first `read` bytes of the spare room.
    unsafe { buffer.set_len(buffer.len() + read) };
    Ok(read)
}

/// Peeks at the next byte waiting on `stream`, without consuming it and
/// without waiting. Returns 1 when a byte is there, 0 at the peer's close,
/// and `EAGAIN` when nothing arrived.
pub(super) fn peek(stream: &TcpStream) -> nix::Result<usize> {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd as _;
    let mut byte = [0u8; 1];
    recv(stream.as_raw_fd(), &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Returns a client and the peer that reads what it sends, after one
    /// message of `first` has been read and taken, so the socket is left
    /// marked readable with nothing to read.
    async fn after_first_message(first: &[u8]) -> (TcpStream, Peer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let mut peer = Peer::new(listener.accept().await.unwrap().0);
        client.write_all(first).await.unwrap();
        assert_eq!(peer.fill(Duration::from_secs(5)).await.unwrap(), first.len());
        peer.consume(first.len());
        (client, peer)
    }

    #[tokio::test]
    async fn empty_retry_keeps_small_buffer() {
        let (mut client, mut peer) = after_first_message(b"first").await;

        // The next fill reads nothing first and waits for these bytes.
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"second").await.unwrap();
            client
        });
        assert_eq!(peer.fill(Duration::from_secs(5)).await.unwrap(), 6);
        assert_eq!(peer.buffered(), b"second");
        assert!(peer.buffer.capacity() < READ_CHUNK, "capacity {}", peer.buffer.capacity());
        drop(writer.await.unwrap());
    }

    /// A later deadline leaves the registered timer where it is, an earlier
    /// one moves it back, and either way the wait ends at the deadline set
    /// last. Time is paused, so the clock moves only by the timers.
    #[tokio::test(start_paused = true)]
    async fn timer_moves_back_only_when_earlier() {
        let mut timer = ReadTimer::default();
        let start = Instant::now();
        timer.start(Duration::from_secs(10));
        let first = timer.sleep.as_ref().unwrap().deadline();
        assert_eq!(first, start + Duration::from_secs(10));

        tokio::time::advance(Duration::from_secs(1)).await;
        timer.start(Duration::from_secs(60));
        assert_eq!(timer.sleep.as_ref().unwrap().deadline(), first, "a later deadline moved the timer");
        timer.expired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(61));

        // The timer now sits at its passed deadline, which comes before any
        // new one.
        timer.start(Duration::from_secs(5));
        assert_eq!(timer.sleep.as_ref().unwrap().deadline(), start + Duration::from_secs(61));
        timer.expired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(66));

        let mut timer = ReadTimer::default();
        let start = Instant::now();
        timer.start(Duration::from_secs(300));
        timer.start(Duration::from_secs(5));
        assert_eq!(timer.sleep.as_ref().unwrap().deadline(), start + Duration::from_secs(5));
        timer.expired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }

    /// Each fill on a silent peer times out after its own timeout, whether
    /// it is longer or shorter than the one before, and a fill still reads
    /// what arrives.
    #[tokio::test(start_paused = true)]
    async fn fills_time_out_on_own_timeouts() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        for seconds in [30, 5, 300, 1] {
            assert_times_out(&mut peer, Duration::from_secs(seconds)).await;
        }
        client.write_all(b"late").await.unwrap();
        assert_eq!(peer.fill(Duration::from_secs(60)).await.unwrap(), 4);
        assert_eq!(peer.buffered(), b"late");
    }

    #[tokio::test]
    async fn short_read_clears_readiness() {
        let (_client, peer) = after_first_message(b"request").await;

        // The read returned less than it had room for, so the socket is
        // empty and the next fill waits for an event without a `recv`.
        let ready = tokio::time::timeout(Duration::ZERO, peer.stream.readable()).await;
        assert!(ready.is_err(), "the socket is still marked readable");
    }

    /// Waits until `count` bytes sent by the client are queued on the
    /// peer's socket, so the next read finds them all.
    async fn wait_queued(peer: &Peer, count: usize) {
        let mut probe = vec![0; count + 1];
        for _ in 0..500 {
            peer.stream.readable().await.unwrap();
            if peer.stream.peek(&mut probe).await.unwrap() >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("{count} bytes did not arrive");
    }

    #[tokio::test]
    async fn full_read_keeps_readiness() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        let message = vec![b'x'; 3 * FIRST_READ];
        client.write_all(&message).await.unwrap();
        wait_queued(&peer, message.len()).await;

        // The first read fills the buffer's room exactly, so the socket
        // may hold more and must stay readable for the next fill.
        let first = peer.fill(Duration::from_secs(5)).await.unwrap();
        assert!(first < message.len(), "read {first} bytes at once");
        let second = tokio::time::timeout(Duration::from_secs(2), peer.fill(Duration::from_secs(5))).await;
        let second = second.expect("the rest of the message was not read").unwrap();
        assert_eq!(first + second, message.len());

        // Now the socket is empty, and the next fill waits.
        let third = tokio::time::timeout(Duration::from_millis(50), peer.fill(Duration::from_secs(5))).await;
        assert!(third.is_err(), "nothing more was sent");
    }

    #[tokio::test]
    async fn exact_room_then_more() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        // An empty buffer gets FIRST_READ bytes of room, so this message
        // fills it exactly.
        client.write_all(&[b'x'; FIRST_READ]).await.unwrap();
        wait_queued(&peer, FIRST_READ).await;
        assert_eq!(peer.fill(Duration::from_secs(5)).await.unwrap(), FIRST_READ);
        assert_eq!(peer.buffer.capacity(), FIRST_READ, "the read had more room than the message");
        peer.consume(FIRST_READ);

        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(b"second").await.unwrap();
            client
        });
        let read = tokio::time::timeout(Duration::from_secs(2), peer.fill(Duration::from_secs(5))).await;
        assert_eq!(read.expect("the second message was not read").unwrap(), 6);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn eof_after_short_read() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        client.write_all(b"last").await.unwrap();
        client.shutdown().await.unwrap();
        wait_queued(&peer, 4).await;

        // The short read clears the readiness, but not the peer's close.
        assert_eq!(peer.fill(Duration::from_secs(5)).await.unwrap(), 4);
        let end = tokio::time::timeout(Duration::from_secs(2), peer.fill(Duration::from_secs(5))).await;
        assert_eq!(end.expect("the close was not seen").unwrap(), 0);
        let again = tokio::time::timeout(Duration::from_secs(2), peer.fill(Duration::from_secs(5))).await;
        assert_eq!(again.expect("the second read at the end waited").unwrap(), 0);
    }

    #[tokio::test]
    async fn eof_later_wakes_fill() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        let closer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.shutdown().await.unwrap();
            client
        });
        let end = tokio::time::timeout(Duration::from_secs(2), peer.fill(Duration::from_secs(5))).await;
        assert_eq!(end.expect("the close was not seen").unwrap(), 0);
        drop(closer.await.unwrap());
    }

    #[test]
    fn spent_budget_yields() {
        // Runs on its own thread, so a fill that never yields fails this test
        // instead of hanging it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (mut client, mut peer) = after_first_message(b"first").await;
                client.write_all(b"second").await.unwrap();
                wait_queued(&peer, 6).await;

                // A task that did much I/O in one poll has spent its tokio
                // budget, and tokio's reads return `Pending` until it yields.
                tokio::task::yield_now().await;
                while tokio::task::coop::has_budget_remaining() {
                    tokio::task::coop::consume_budget().await;
                }
                let read = peer.fill(Duration::from_secs(5)).await;
                done.send(read.map_err(|error| error.to_string())).unwrap();
            });
        });
        let read = finished.recv_timeout(Duration::from_secs(5)).expect("fill spun without yielding");
        assert_eq!(read, Ok(6));
    }

    #[test]
    fn long_stream_keeps_yielding() {
        // A reader that always finds bytes waiting spends its budget
        // without a `Pending`, as relaying a large body does.
        const TOTAL: usize = 64 << 20;
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (client, mut peer) = after_first_message(b"first").await;
                let mut client = client.into_std().unwrap();
                client.set_nonblocking(false).unwrap();
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    let chunk = vec![b'x'; 1 << 20];
                    for _ in 0..TOTAL / chunk.len() {
                        client.write_all(&chunk).unwrap();
                    }
                });
                let mut read = 0;
                while read < TOTAL {
                    let count = peer.fill(Duration::from_secs(5)).await.unwrap();
                    peer.consume(count);
                    read += count;
                }
                done.send(read).unwrap();
            });
        });
        let read = finished.recv_timeout(Duration::from_secs(20)).expect("fill spun without yielding");
        assert_eq!(read, TOTAL);
    }

    /// A peer that has sent more by each next read, but less than a read's
    /// room, has `fill_more` read the socket directly, read after read.
    /// Those reads must spend the task's tokio budget as `fill`'s do, so
    /// that the other tasks on the thread still run, because reading an
    /// RPC body has no other await that spends it.
    #[tokio::test]
    async fn fill_more_stream_lets_others_run() {
        use std::io::Write as _;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        const READS: usize = 1000;
        let (client, mut peer) = after_first_message(b"first").await;
        let mut client = client.into_std().unwrap();
        client.set_nonblocking(false).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let other = tokio::spawn({
            let runs = runs.clone();
            async move {
                loop {
                    runs.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });

        let mut last_runs = runs.load(Ordering::Relaxed);
        let mut reads_in_a_row = 0;
        let mut max_reads_in_a_row = 0;
        for _ in 0..READS {
            client.write_all(&[b'x'; 4096]).unwrap();
            let queued = std::time::Instant::now();
            while peek(&peer.stream) != Ok(1) {
                assert!(queued.elapsed() < Duration::from_secs(2), "the bytes did not arrive");
            }
            assert_eq!(peer.fill_more(Duration::from_secs(5)).await.unwrap(), 4096);
            peer.consume(4096);
            let now_runs = runs.load(Ordering::Relaxed);
            reads_in_a_row = if now_runs == last_runs { reads_in_a_row + 1 } else { 0 };
            max_reads_in_a_row = max_reads_in_a_row.max(reads_in_a_row);
            last_runs = now_runs;
        }
        other.abort();
        // tokio's budget is 128 operations between yields.
        assert!(max_reads_in_a_row <= 128, "{max_reads_in_a_row} reads in a row while another task was ready");
    }

    /// A small message read after a short read, with the buffer emptied
    /// before, takes a buffer of `FIRST_READ` bytes, as `fill` gives it.
    #[tokio::test]
    async fn fill_more_keeps_small_buffer() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        client.write_all(b"head").await.unwrap();
        wait_queued(&peer, 4).await;
        assert_eq!(peer.fill(Duration::from_secs(5)).await.unwrap(), 4);
        peer.consume(4);

        client.write_all(b"body").await.unwrap();
        wait_queued(&peer, 4).await;
        assert_eq!(peer.fill_more(Duration::from_secs(5)).await.unwrap(), 4);
        assert!(peer.buffer.capacity() < READ_CHUNK, "capacity {}", peer.buffer.capacity());
    }

    /// Reads the bytes after TCP's urgent mark. A read stops at the mark,
    /// short, while those bytes are still queued.
    #[tokio::test]
    async fn urgent_mark_short_read() {
        use std::os::fd::AsRawFd as _;

        let (client, mut peer) = after_first_message(b"first").await;
        let send = |bytes: &[u8], flags: libc::c_int| {
            // SAFETY: `bytes` is a valid buffer of its length, and the
            // descriptor is the client's open socket.
            let sent = unsafe { libc::send(client.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), flags) };
            assert_eq!(sent, bytes.len() as isize);
        };
        send(b"abc", 0);
        send(b"!", libc::MSG_OOB);
        send(b"def", 0);
        // A peek stops at the mark too, so wait for the bytes after it.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let first = peer.fill(Duration::from_secs(5)).await.unwrap();
        assert_eq!(first, 3, "read up to the mark");
        let rest = tokio::time::timeout(Duration::from_secs(2), peer.fill_more(Duration::from_secs(5))).await;
        assert_eq!(rest.expect("the bytes after the urgent mark were not read").unwrap(), 3);
        assert_eq!(peer.buffered(), b"abcdef");
        drop(client);
    }

    /// After a short read with nothing queued, `fill_more` waits for the
    /// next bytes as `fill` does, then for the close, then times out.
    #[tokio::test]
    async fn fill_more_waits_after_short_read() {
        let (mut client, mut peer) = after_first_message(b"first").await;
        client.write_all(b"head").await.unwrap();
        assert_eq!(peer.fill(Duration::from_secs(5)).await.unwrap(), 4);
        assert!(peer.short_read);

        let waited = tokio::time::timeout(Duration::from_millis(50), peer.fill_more(Duration::from_secs(5))).await;
        assert!(waited.is_err(), "nothing was sent");
        client.write_all(b"body").await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(2), peer.fill_more(Duration::from_secs(5))).await;
        assert_eq!(read.expect("the body was not read").unwrap(), 4);
        assert_eq!(peer.buffered(), b"headbody");

        let silent = peer.fill_more(Duration::from_millis(20)).await;
        assert!(matches!(silent, Err(StreamError::TimedOut(_))), "{silent:?}");
        drop(client);
        let end = tokio::time::timeout(Duration::from_secs(2), peer.fill_more(Duration::from_secs(5))).await;
        assert_eq!(end.expect("the close was not read").unwrap(), 0);
        assert_eq!(peer.buffered(), b"headbody");
    }

    #[tokio::test]
    async fn idle_wait_holds_no_buffer() {
        let (_client, mut peer) = after_first_message(b"request").await;

        // The next fill finds nothing and waits, as on a kept-alive
        // connection between requests.
        let waited = tokio::time::timeout(Duration::from_millis(50), peer.fill(Duration::from_secs(5))).await;
        assert!(waited.is_err(), "nothing was sent");
        assert_eq!(peer.buffer.capacity(), 0);
    }

    /// Sends `bytes` from `client` at `at`, in a task of its own.
    fn send_at(mut client: TcpStream, at: Instant, bytes: &'static [u8]) -> tokio::task::JoinHandle<TcpStream> {
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            client.write_all(bytes).await.unwrap();
            client
        })
    }

    /// Returns a client and its peer after a fill with `timeout` read
    /// `bytes` that arrived `after` into it, which leaves the peer's timer
    /// registered at that fill's deadline.
    async fn after_early_read(after: Duration, timeout: Duration, bytes: &'static [u8]) -> (TcpStream, Peer) {
        let (client, mut peer) = after_first_message(b"first").await;
        let start = Instant::now();
        let writer = send_at(client, start + after, bytes);
        assert_eq!(peer.fill(timeout).await.unwrap(), bytes.len());
        assert_eq!(Instant::now(), start + after);
        peer.consume(bytes.len());
        (writer.await.unwrap(), peer)
    }

    /// Checks that a fill on a silent peer times out after `timeout`, to
    /// the nanosecond of the paused clock.
    async fn assert_times_out(peer: &mut Peer, timeout: Duration) {
        let before = Instant::now();
        assert!(matches!(peer.fill(timeout).await, Err(StreamError::TimedOut(t)) if t == timeout), "{timeout:?}");
        assert_eq!(Instant::now() - before, timeout);
    }

    /// A fill that read its bytes before its deadline leaves the timer
    /// registered at that deadline. A later fill with a longer timeout must
    /// wait its own timeout, not end at the old deadline, and a later fill
    /// with a shorter one must end at its own.
    #[tokio::test(start_paused = true)]
    async fn early_read_keeps_next_deadline() {
        let (_client, mut peer) = after_early_read(Duration::from_secs(1), Duration::from_secs(10), b"data").await;
        assert_times_out(&mut peer, Duration::from_secs(60)).await;
        assert_times_out(&mut peer, Duration::from_secs(2)).await;
    }

    /// The stale timer of an earlier fill fires while the task waits in a
    /// select with another future, as `fill_while_idle` does with the
    /// slot's eviction. The select must not end at that firing, the other
    /// branch must still win, and the next fill must time out on time.
    #[tokio::test(start_paused = true)]
    async fn stale_timer_in_select_with_eviction() {
        let (_client, mut peer) = after_early_read(Duration::from_secs(1), Duration::from_secs(10), b"data").await;
        let start = Instant::now();
        let evicted = std::sync::Arc::new(tokio::sync::Notify::new());
        let notifier = evicted.clone();
        let eviction = tokio::spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs(19)).await;
            notifier.notify_one();
        });
        let outcome = tokio::select! {
            filled = peer.fill(Duration::from_secs(60)) => format!("fill {filled:?}"),
            () = evicted.notified() => "evicted".to_owned(),
        };
        assert_eq!(outcome, "evicted");
        assert_eq!(Instant::now(), start + Duration::from_secs(19));
        eviction.await.unwrap();

        assert_times_out(&mut peer, Duration::from_secs(5)).await;
    }

    /// A zero timeout still reads bytes that are already waiting, as
    /// `tokio::time::timeout` did, and with none it ends at once.
    #[tokio::test(start_paused = true)]
    async fn zero_timeout_reads_waiting_bytes() {
        // Leave the timer registered 300 s ahead.
        let (mut client, mut peer) = after_early_read(Duration::from_secs(1), Duration::from_secs(300), b"a").await;

        client.write_all(b"now").await.unwrap();
        wait_queued(&peer, 3).await;
        assert_eq!(peer.fill(Duration::ZERO).await.unwrap(), 3);
        peer.consume(3);

        let before = Instant::now();
        assert!(matches!(peer.fill(Duration::ZERO).await, Err(StreamError::TimedOut(_))));
        assert!(Instant::now() - before <= Duration::from_millis(1), "waited {:?}", Instant::now() - before);
    }

    /// A timeout too long to add to the clock waits for the bytes, and the
    /// next, short timeout moves the timer back from the far future.
    #[tokio::test(start_paused = true)]
    async fn longest_timeout_then_short_one() {
        let (_client, mut peer) = after_early_read(Duration::from_secs(86_400 * 400), Duration::MAX, b"late").await;
        assert_times_out(&mut peer, Duration::from_secs(1)).await;
    }

    /// Compares fills on one peer with what `tokio::time::timeout` gives:
    /// for a run of timeouts and arrival times, each fill ends at the
    /// earlier of the two, with the bytes or with `TimedOut`.
    #[tokio::test(start_paused = true)]
    async fn fills_match_timeout_model() {
        let (client, mut peer) = after_first_message(b"first").await;
        let mut client = Some(client);
        // Each round draws the fill's timeout and when bytes arrive after
        // the fill starts (`None`: never). Timeouts are whole half seconds
        // and arrivals are 250 ms past a whole second, so none ties.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for round in 0..200 {
            let timeout = Duration::from_millis(1000 * (1 + next(40)) + 500 * next(2));
            let arrival = match next(3) {
                0 => None,
                _ => Some(Duration::from_millis(250 + 1000 * next(45))),
            };
            let start = Instant::now();
            let writer = match arrival {
                Some(after) => Some(send_at(client.take().unwrap(), start + after, b"x")),
                None => None,
            };
            let result = peer.fill(timeout).await;
            let waited = Instant::now() - start;
            match arrival {
                Some(after) if after < timeout => {
                    assert_eq!(result.unwrap(), 1, "round {round}");
                    assert_eq!(waited, after, "round {round}: data at {after:?}, timeout {timeout:?}");
                    peer.consume(1);
                }
                _ => {
                    assert!(matches!(result, Err(StreamError::TimedOut(t)) if t == timeout), "round {round}");
                    assert_eq!(waited, timeout, "round {round}: timeout {timeout:?}");
                }
            }
            if let Some(writer) = writer {
                client = Some(writer.await.unwrap());
            }
            // Bytes that arrived after a timeout are read by the next fill.
            if !peer.has_unread_bytes() {
                continue;
            }
            assert_eq!(peer.fill(Duration::from_secs(1)).await.unwrap(), 1, "round {round}");
            peer.consume(1);
        }
    }
}
