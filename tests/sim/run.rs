//! One seed, one scenario: a real configuration (conf/default.conf over a copy of www/), the
//! real `Loop` on the simulation backend, 1 to 4 scripted clients, and the invariants checked
//! after every step. Everything random comes from the seed.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use backends::sim::rng::Rng;
use backends::sim::{Sim, SimOptions};
use webserv::server::conn::{IN_HIGH, OUT_HIGH};
use webserv::server::{Control, Loop};

use super::http::{parse, show, Parsed};
use super::plan::{child_plan, request, Req, Site};

/// Steps of client actions and loop turns before the scenario winds down.
const MAX_STEPS: usize = 4000;
/// Virtual time a stopping server may take to finish (its longest timeouts are 75 s).
const STOP_TIME: Duration = Duration::from_secs(1800);

struct Env {
    prefix: PathBuf,
    cfg: webserv::config::Config,
    site: Site,
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "uploads" {
                copy_dir(&e.path(), &t);
            }
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// The shipped configuration over a private copy of the site (uploads land there) — one copy
/// per test thread: the leak check tells a real fd still open on the file an op used from one
/// reused since by comparing files, and seeds running on other threads hold the same numbers
/// open on their own files (the open-file cache keeps large ones open), never on these.
fn env() -> &'static Env {
    thread_local! {
        static ENV: OnceLock<&'static Env> = const { OnceLock::new() };
    }
    ENV.with(|e| *e.get_or_init(|| Box::leak(Box::new(make_env()))))
}

fn make_env() -> Env {
    {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        remove_stale(&std::env::temp_dir());
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = std::env::temp_dir().join(format!("webserv-sim-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&prefix);
        copy_dir(&root.join("www"), &prefix.join("www"));
        copy_dir(&root.join("conf"), &prefix.join("conf"));
        std::fs::create_dir_all(prefix.join("www/uploads")).unwrap();
        std::fs::write(
            prefix.join("www/cgi-bin/sim.py"),
            "# run by the simulation\n",
        )
        .unwrap();
        // Files over the cache's limit are streamed from disk (the file task: reads or
        // sendfile, and its fd closed through the backend).
        for (name, len) in [("sim-mid.bin", 70_000), ("sim-big.bin", 300_000)] {
            let data: Vec<u8> = (0..len).map(|i: usize| (i * 7 % 251) as u8).collect();
            std::fs::write(prefix.join("www/demo").join(name), data).unwrap();
        }
        let cfg = webserv::config::load(&prefix.join("conf/default.conf"), &prefix)
            .unwrap_or_else(|e| panic!("conf/default.conf: {e}"));
        let site = Site::load(&prefix.join("www"));
        Env { prefix, cfg, site }
    }
}

/// Remove the site copies of earlier test processes that are gone (a process cannot remove
/// its own at exit: tests of one process share it until the last one ends).
fn remove_stale(tmp: &std::path::Path) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("webserv-sim-")
            .map(|r| r.split('-').next().unwrap_or(r))
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if pid.parse::<u32>().is_ok() && !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

struct Client {
    id: usize,
    reqs: Vec<Req>,
    wire: Vec<u8>,
    /// End offset of each request in `wire`.
    ends: Vec<usize>,
    sent: usize,
    pipelined: bool,
    rx: Vec<u8>,
    answered: usize,
    /// Reset (RST) once this many bytes are sent.
    abort_at: Option<usize>,
    half_close: bool,
    fin: bool,
    /// Read at most this many bytes per read (a slow reader).
    slow: Option<usize>,
    done: bool,
    /// The client did something that excuses a missing or cut answer.
    tolerant: bool,
    /// A response said the connection closes after it.
    closing: bool,
    /// The client half-closed: the server takes that as the client leaving (as nginx does)
    /// and may stop a CGI working for it, so a missing answer is no fault.
    may_lose: bool,
    /// A request with a body was answered before the server read all of its body (a CGI
    /// that stopped reading stdin): the server then closes without having said
    /// `Connection: close` (a known defect, see KNOWN_CLOSE_AFTER_BODY).
    after_body: bool,
}

/// The most input and output any connection held, over every seed of this process.
pub static MAX_IN: AtomicUsize = AtomicUsize::new(0);
pub static MAX_OUT: AtomicUsize = AtomicUsize::new(0);

/// What one seed explored.
pub struct Outcome {
    pub choices: u64,
    /// Bytes the clients received (with `choices`, a fingerprint of the run: the Date
    /// header is the only wall-clock input, and its length is fixed).
    pub bytes: u64,
    /// Virtual time the scenario took.
    pub virtual_time: Duration,
}

fn new_client(rng: &mut Rng, sim: &Sim, seed: u64, i: usize, site: &Site, big: bool) -> Client {
    let slow = rng.chance(150).then(|| rng.range(1, 2000));
    let window = if slow.is_some() {
        rng.range(1, 4096)
    } else {
        1 << 20
    };
    let id = sim.connect(window);
    let n = rng.range(1, 6);
    let reqs: Vec<Req> = (0..n)
        .map(|k| request(rng, site, &format!("{seed}-{i}-{k}"), k + 1 == n, big))
        .collect();
    let mut wire = Vec::new();
    let mut ends = Vec::new();
    for r in &reqs {
        wire.extend_from_slice(&r.bytes);
        ends.push(wire.len());
    }
    let abort_at = rng.chance(100).then(|| rng.below(wire.len() + 1));
    Client {
        id,
        pipelined: rng.chance(400),
        half_close: rng.chance(150),
        fin: false,
        slow,
        tolerant: abort_at.is_some() || slow.is_some(),
        abort_at,
        reqs,
        wire,
        ends,
        sent: 0,
        rx: Vec::new(),
        answered: 0,
        done: false,
        closing: false,
        may_lose: false,
        after_body: false,
    }
}

struct Run {
    sim: Sim,
    /// Report the known defects too (the #[ignore]d tests named after their seeds).
    strict: bool,
    faults: bool,
    /// The server was asked to stop: it closes idle connections, even with a request on its
    /// way (a request still in the socket is a race a stopping server may lose).
    stopping: bool,
    errors: Vec<String>,
    bytes: u64,
}

impl Run {
    fn fail(&mut self, c: usize, what: String) {
        self.errors.push(format!("client {c}: {what}"));
    }

    /// Take in what the server sent and check each whole response against its request.
    fn read(&mut self, cl: &mut Client, max: usize) {
        let got = self.sim.read(cl.id, max);
        self.bytes += got.len() as u64;
        cl.rx.extend_from_slice(&got);
        let (eof, closed, faulted) = self.sim.client_state(cl.id);
        cl.tolerant |= faulted;
        let drained = self.sim.read(cl.id, 0).is_empty() && eof;
        // A failure injected on this connection (or the client's own rudeness) excuses any
        // error status and a cut or missing answer; an injected spawn failure excuses a 500
        // for a CGI request.
        let lenient = cl.tolerant;
        loop {
            // A HEAD's answer has no body; but an answer that comes before the whole HEAD
            // request was sent (a 408) is not its answer, and has one.
            let sent_whole = cl.ends.get(cl.answered).is_some_and(|&e| e <= cl.sent);
            let head = sent_whole && cl.reqs.get(cl.answered).is_some_and(|r| r.head);
            match parse(&cl.rx, head, drained) {
                Parsed::Partial => break,
                Parsed::Bad(why) => {
                    let msg = format!("desynchronised response stream ({why})");
                    self.fail(cl.id, msg);
                    cl.rx.clear();
                    cl.done = true;
                    return;
                }
                Parsed::Done(resp, used) => {
                    cl.rx.drain(..used);
                    if (100..200).contains(&resp.status) {
                        continue;
                    }
                    let Some(req) = cl.reqs.get(cl.answered) else {
                        let msg = format!("response {} with no request", resp.status);
                        self.fail(cl.id, msg);
                        cl.done = true;
                        return;
                    };
                    let k = cl.answered;
                    let spawn_failed = self.faults && resp.status == 500 && req.cgi;
                    let excused = spawn_failed || (lenient && resp.status >= 400);
                    if !(req.ok.contains(&resp.status) || excused) {
                        let msg = format!(
                            "request {k} {:?}: status {} (expected {:?})",
                            show(&req.bytes),
                            resp.status,
                            req.ok
                        );
                        self.fail(cl.id, msg);
                    }
                    if let (true, Some(b)) = ((200..300).contains(&resp.status), &req.body) {
                        if resp.body != *b {
                            let msg = format!(
                                "request {k} {:?}: body of {} B is not the expected {} B \
                                 (an answer out of order?): {:?}",
                                show(&req.bytes),
                                resp.body.len(),
                                b.len(),
                                show(&resp.body)
                            );
                            self.fail(cl.id, msg);
                        }
                    }
                    cl.closing |= resp.close || req.closes;
                    cl.after_body |= req.bytes.starts_with(b"POST /cgi-bin/");
                    cl.answered += 1;
                }
            }
        }
        if closed && drained {
            cl.done = true;
            let cut = !cl.rx.is_empty();
            let excused = lenient
                || cl.closing
                || cl.may_lose
                || (cl.after_body && !self.strict)
                || cl.reqs[..cl.answered.min(cl.reqs.len())]
                    .iter()
                    .any(|r| r.hostile)
                || cl.reqs.get(cl.answered).is_some_and(|r| r.hostile);
            if cut && !excused {
                let msg = format!(
                    "response {} cut short by the close: {:?}",
                    cl.answered,
                    show(&cl.rx)
                );
                self.fail(cl.id, msg);
            }
            let asked = cl.ends.iter().filter(|&&e| e <= cl.sent).count();
            if cl.answered < asked && !excused && !cut && !self.stopping {
                let msg = format!("closed with requests {}..{asked} unanswered", cl.answered);
                self.fail(cl.id, msg);
            }
        }
    }

    /// One action of client `cl`; false when it had nothing to do.
    fn act(&mut self, rng: &mut Rng, cl: &mut Client) -> bool {
        if cl.done {
            return false;
        }
        if let Some(at) = cl.abort_at {
            if cl.sent >= at && rng.chance(300) {
                self.sim.reset(cl.id);
                cl.done = true;
                return true;
            }
        }
        let limit = if cl.pipelined {
            cl.wire.len()
        } else {
            cl.ends.get(cl.answered).copied().unwrap_or(cl.wire.len())
        };
        let limit = cl.abort_at.map_or(limit, |a| limit.min(a));
        let can_send = cl.sent < limit && !cl.closing;
        if can_send && rng.chance(600) {
            let left = limit - cl.sent;
            let n = if rng.chance(500) {
                left
            } else {
                rng.range(1, left)
            };
            self.sim.send(cl.id, &cl.wire[cl.sent..cl.sent + n]);
            cl.sent += n;
            return true;
        }
        if cl.half_close && !cl.fin && cl.sent == cl.wire.len() {
            self.sim.shutdown(cl.id);
            cl.fin = true;
            cl.may_lose = true;
            return true;
        }
        let before = cl.rx.len() + cl.answered;
        self.read(cl, cl.slow.unwrap_or(usize::MAX));
        can_send || cl.rx.len() + cl.answered != before || cl.done
    }

    fn check_violations(&mut self) {
        for v in self.sim.take_violations() {
            self.errors.push(format!("contract: {v}"));
        }
    }

    fn check_bounds(&mut self, lp: &Loop, bufs: usize, buf_size: usize) {
        let (conns, _) = lp.probe();
        for (inb, outb) in conns {
            MAX_IN.fetch_max(inb, Ordering::Relaxed);
            MAX_OUT.fetch_max(outb, Ordering::Relaxed);
            // Receives already completed in the batch that crossed the bound land on top of
            // it (at most the whole pool, as many as a multishot receive posts in one batch
            // before the loop sees the first), plus one more that races the cancel; one
            // response piece (up to the CGI buffer or a coalesced send) may be queued on top.
            if inb > IN_HIGH + (bufs + 1) * buf_size || outb > OUT_HIGH + 3 * 64 * 1024 + 4096 {
                self.errors.push(format!(
                    "connection holds {inb} B of input and {outb} B of output (bounds {IN_HIGH}/{OUT_HIGH})"
                ));
            }
        }
    }
}

/// Run scenario `seed`; `Err` lists every invariant it broke.
pub fn run_seed(seed: u64, strict: bool) -> Result<Outcome, String> {
    let env = env();
    // What an earlier run of this seed uploaded would change its answers (204 for 201).
    remove_uploads(seed);
    let r = run_scenario(seed, strict, env);
    remove_uploads(seed);
    r
}

fn remove_uploads(seed: u64) {
    let dir = env().prefix.join("www/uploads");
    let mine = format!("sim-{seed}-");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&mine) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn run_scenario(seed: u64, strict: bool, env: &Env) -> Result<Outcome, String> {
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let opts = SimOptions::from_seed(seed, local);
    let buf_size = opts.buf_size;
    let faults = opts.faults > 0;
    let sim = Sim::new(opts.clone());
    sim.on_spawn(Box::new(child_plan));
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let cfg = env.cfg.clone();
    let control = Control::new(cfg.clone());
    let listener: OwnedFd = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("bind: {e}"))?
        .into();
    let addr = cfg.listen_addrs()[0];
    let mut lp = Loop::new(
        Arc::new(cfg),
        Box::new(sim.clone()),
        vec![(addr, listener)],
        control.clone(),
    )
    .map_err(|e| format!("Loop::new: {e}"))?;
    lp.start();
    let n = rng.range(1, 4);
    let mut clients: Vec<Client> = (0..n)
        .map(|i| new_client(&mut rng, &sim, seed, i, &env.site, buf_size >= 1024))
        .collect();
    let mut run = Run {
        sim: sim.clone(),
        strict,
        faults,
        stopping: false,
        errors: Vec::new(),
        bytes: 0,
    };
    let mut stopped = false;
    let early_stop = if rng.chance(100) { 2 } else { 0 };
    for _ in 0..MAX_STEPS {
        if clients.iter().all(|c| c.done) {
            break;
        }
        let mut acted = false;
        if rng.chance(500) {
            let i = rng.below(clients.len());
            acted = run.act(&mut rng, &mut clients[i]);
        }
        if !acted {
            let before = sim.choices();
            let r = lp.turn(Some(Duration::ZERO));
            if sim.choices() == before && !clients.iter_mut().any(|c| run.act(&mut rng, c)) {
                // Nothing moved: let virtual time run to the next deadline.
                match lp.turn(None) {
                    Ok(s) => stopped |= s,
                    Err(e) => run.errors.push(format!("loop: {e}")),
                }
            }
            match r {
                Ok(s) => stopped |= s,
                Err(e) => run.errors.push(format!("loop: {e}")),
            }
        }
        run.check_violations();
        run.check_bounds(&lp, opts.buf_count as usize, buf_size);
        if !run.errors.is_empty() || stopped {
            break;
        }
        if rng.chance(1) {
            // SIGHUP: the same configuration again; requests in flight carry on.
            control.reload(env.cfg.clone());
        }
        if !run.stopping && rng.chance(early_stop) {
            // SIGTERM while requests are in flight: they finish, idle connections close.
            control.stop();
            run.stopping = true;
        }
    }
    // Wind down: stop the server; clients go on (a request they have begun is in flight and
    // gets its answer) and read everything; the loop must finish.
    control.stop();
    run.stopping = true;
    let stop_at = sim.elapsed();
    while !stopped && run.errors.is_empty() {
        for c in clients.iter_mut() {
            if !c.done {
                run.act(&mut rng, c);
                run.read(c, usize::MAX);
            }
        }
        match lp.turn(Some(Duration::ZERO)) {
            Ok(s) => stopped = s,
            Err(e) => run.errors.push(format!("loop while stopping: {e}")),
        }
        if stopped {
            break;
        }
        match lp.turn(None) {
            Ok(s) => stopped = s,
            Err(e) => run.errors.push(format!("loop while stopping: {e}")),
        }
        run.check_violations();
        run.check_bounds(&lp, opts.buf_count as usize, buf_size);
        if sim.elapsed() > stop_at + STOP_TIME {
            run.errors.push(format!(
                "the stopping loop did not finish in {STOP_TIME:?} (virtual)"
            ));
        }
    }
    // The loop ends once its connections are closed; what their tasks closed last (a CGI
    // pipe, a file) may still be completing: let it (a real process would simply exit).
    for _ in 0..100 {
        if sim.busy() == 0 || !run.errors.is_empty() {
            break;
        }
        if let Err(e) = lp.turn(None) {
            run.errors.push(format!("loop after stopping: {e}"));
        }
    }
    for c in clients.iter_mut() {
        if !c.done {
            run.read(c, usize::MAX);
        }
    }
    drop(lp);
    run.check_violations();
    if run.errors.is_empty() {
        for l in sim.leaks() {
            run.errors.push(format!("leak: {l}"));
        }
    }
    if run.errors.is_empty() {
        Ok(Outcome {
            choices: sim.choices(),
            bytes: run.bytes,
            virtual_time: sim.elapsed(),
        })
    } else {
        let who: Vec<String> = clients
            .iter()
            .map(|c| {
                let reqs: Vec<String> = c.reqs.iter().map(|r| show(&r.bytes[..r.bytes.len().min(60)])).collect();
                format!(
                    "client {}: sent {}/{} answered {} pipelined {} slow {:?} abort {:?} half-close {} {:?}",
                    c.id, c.sent, c.wire.len(), c.answered, c.pipelined, c.slow, c.abort_at, c.half_close, reqs
                )
            })
            .collect();
        Err(format!(
            "{opts:?}\n  {}\n  {}",
            run.errors.join("\n  "),
            who.join("\n  ")
        ))
    }
}
