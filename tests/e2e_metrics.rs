//! Issue 15: the `status` location's Prometheus exposition (`?format=prometheus`). The page is
//! parsed by prometheus_client's own text parser (PyPI), in a virtual environment this test
//! creates under the target directory on first use (`python3 -m venv` + `pip install`), or the
//! one `WEBSERV_PROM_VENV` names. Without either, the test fails and says why: it is not
//! reported as a pass.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// Reads an exposition on stdin, parses it with prometheus_client, prints one line per sample:
/// `name{k="v",...} value` (labels sorted), and `# family NAME TYPE` per family.
const PARSE: &str = r##"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    print("# family %s %s" % (fam.name, fam.type))
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, float(s.value)))
"##;

fn venv_python() -> PathBuf {
    let venv = match std::env::var_os("WEBSERV_PROM_VENV") {
        Some(v) => PathBuf::from(v),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("prom-venv"),
    };
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import prometheus_client"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&py) {
        return py;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    let pip = made
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "prometheus_client"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        pip && ok(&py),
        "cannot set up a virtual environment with prometheus_client at {} (needs python3-venv \
         and PyPI, or WEBSERV_PROM_VENV naming a venv that has it)",
        venv.display()
    );
    py
}

/// Samples by `name{labels}`, and families by name with their type.
struct Parsed {
    samples: BTreeMap<String, f64>,
    families: BTreeMap<String, String>,
}

fn parse(py: &Path, text: &str) -> Parsed {
    use std::io::Write;
    let mut child = Command::new(py)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the page: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut p = Parsed {
        samples: BTreeMap::new(),
        families: BTreeMap::new(),
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("# family ") {
            let (n, t) = rest.split_once(' ').unwrap();
            p.families.insert(n.to_string(), t.to_string());
        } else if let Some((k, v)) = line.rsplit_once(' ') {
            p.samples.insert(k.to_string(), v.parse().unwrap());
        }
    }
    p
}

impl Parsed {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:?}", self.samples.keys()))
    }
    fn or0(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
}

const CONF: &str = "{BASE}
workers 2;
server {
    listen 127.0.0.1:{PORT};
    root {DIR}/www;
    location = /status { status; }
    location /cgi-bin/ { cgi .sh /bin/sh; }
}
";

#[test]
fn prometheus_page_parses_and_counters_move() {
    let py = venv_python();
    for_each_backend("prometheus_page_parses_and_counters_move", |b| {
        let s = Server::start(b, CONF, |d| {
            write_file(d, "www/a.txt", "hello\n");
            write_file(
                d,
                "www/cgi-bin/hi.sh",
                "printf 'Content-Type: text/plain\\r\\n\\r\\nhi\\n'\n",
            );
        });
        let page = |s: &Server| {
            let r = get(s.port, "/status?format=prometheus");
            assert_eq!(r.status, 200, "{}", r.dump());
            assert_eq!(
                r.header("Content-Type"),
                Some("text/plain; version=0.0.4; charset=utf-8")
            );
            parse(&py, &r.text())
        };
        // Server::start's probe connected once; with two workers and a listener each
        // (SO_REUSEPORT) the worker that holds it may accept it only after this first page
        // was rendered. Page again until every connection made so far was accepted, so the
        // deltas below count this test's connections only.
        let mut made = 1.0;
        let p1 = loop {
            let p = page(&s);
            made += 1.0;
            if p.get("webserv_connections_accepted_total{}") >= made || made > 200.0 {
                break p;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(
            p1.get("webserv_connections_accepted_total{}"),
            made,
            "({b})"
        );
        for (name, ty) in [
            ("webserv_requests", "counter"),
            ("webserv_received_bytes", "counter"),
            ("webserv_sent_bytes", "counter"),
            ("webserv_connections", "gauge"),
            ("webserv_keepalive_reused_requests", "counter"),
            ("webserv_backend_ops_submitted", "counter"),
            ("webserv_kernel_entries", "counter"),
            ("webserv_completions_per_wait", "histogram"),
            ("webserv_recv_buffers_in_use", "gauge"),
            ("webserv_cgi_spawned", "counter"),
            ("webserv_cgi_failed", "counter"),
            ("webserv_cgi_timed_out", "counter"),
            ("webserv_upload_bytes", "counter"),
            ("webserv_uptime_seconds", "gauge"),
            ("webserv_build_info", "gauge"),
        ] {
            assert_eq!(
                p1.families.get(name).map(String::as_str),
                Some(ty),
                "family {name} ({b})"
            );
        }
        let info = format!(
            "webserv_build_info{{backend=\"{b}\",version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(p1.get(&info), 1.0, "({b})");
        assert_eq!(p1.get("webserv_workers{}"), 2.0);
        // Requests: 3 × 200, 2 × 404, one CGI, two on one keep-alive connection.
        for _ in 0..3 {
            assert_eq!(get(s.port, "/a.txt").status, 200);
        }
        for _ in 0..2 {
            assert_eq!(get(s.port, "/nope").status, 404);
        }
        assert_eq!(get(s.port, "/cgi-bin/hi.sh").text(), "hi\n");
        let mut c = common::Conn::open(s.port);
        for _ in 0..2 {
            c.send(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(c.read_response_head(true).status, 200);
        }
        drop(c);
        let p2 = page(&s);
        let d = |k: &str| p2.or0(k) - p1.or0(k);
        // +1: the first status request itself, counted once it was answered.
        assert_eq!(
            d("webserv_requests_total{code=\"2xx\",method=\"GET\"}"),
            3.0 + 1.0 + 1.0
        );
        assert_eq!(
            d("webserv_requests_total{code=\"4xx\",method=\"GET\"}"),
            2.0
        );
        assert_eq!(
            d("webserv_requests_total{code=\"2xx\",method=\"HEAD\"}"),
            2.0
        );
        assert_eq!(d("webserv_keepalive_reused_requests_total{}"), 1.0);
        assert_eq!(d("webserv_cgi_spawned_total{}"), 1.0);
        assert_eq!(d("webserv_connections_accepted_total{}"), 8.0);
        assert!(d("webserv_received_bytes_total{}") > 8.0 * 30.0);
        assert!(d("webserv_sent_bytes_total{}") > 3.0 * 6.0);
        assert!(d("webserv_completions_per_wait_count{}") > 0.0);
        assert!(p2.get("webserv_kernel_entries_total{}") > 0.0);
        assert!(p2.get("webserv_backend_ops_submitted_total{kind=\"accept\"}") >= 1.0);
        assert!(
            p2.get("webserv_connections_active{}") >= 1.0,
            "this request's"
        );
        assert!(p2.get("webserv_uptime_seconds{}") >= p1.get("webserv_uptime_seconds{}"));
    });
}
