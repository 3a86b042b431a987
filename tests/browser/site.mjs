// Drives the default site in headless Chromium over the DevTools protocol (no npm packages:
// Node 20 with --experimental-websocket). Each step prints a line; any failure exits non-zero.
//
// Environment (ci/browser.sh sets it):
//   BASE_URL   http://127.0.0.1:PORT of a running webserv serving a copy of www/, or
//              https://127.0.0.1:PORT: then every response must also have come over TLS that
//              Chromium calls secure (the certificate verified against its trust store)
//   SITE_DIR   that copy of www/ (files are checked on disk there)
//   OUT_DIR    where the screenshots and the Chromium profile go
//   CHROMIUM   the browser binary (default /usr/bin/chromium)
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

const BASE = mustEnv("BASE_URL").replace(/\/$/, "");
const SITE = mustEnv("SITE_DIR");
const OUT = mustEnv("OUT_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_TIMEOUT = 10_000;
const HTTPS = new URL(BASE).protocol === "https:";

function mustEnv(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

let browser = null;
let finished = false;
function fail(msg) {
  console.error(`FAIL: ${msg}`);
  if (browser) browser.kill("SIGKILL");
  process.exit(1);
}
function check(cond, msg) {
  if (!cond) fail(msg);
}
let stepNo = 0;
function step(msg) {
  console.log(`[${++stepNo}] ${msg}`);
}

// Whole run: never hang a CI job.
setTimeout(() => fail("browser run exceeded 50 s"), 50_000).unref();

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// ---- start Chromium and find its DevTools endpoint -------------------------------------------
const profile = fs.mkdtempSync(path.join(OUT, "chromium-profile-"));
const debugPort = await freePort();
browser = spawn(
  CHROMIUM,
  [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
    `--remote-debugging-port=${debugPort}`,
    "--window-size=1280,900",
    "about:blank",
  ],
  { stdio: ["ignore", "ignore", "pipe"] },
);
browser.on("error", (e) => fail(`cannot start ${CHROMIUM}: ${e.message}`));
browser.on("exit", (code, sig) => {
  if (!finished) fail(`chromium exited early (code ${code}, signal ${sig})`);
});
const wsUrl = await new Promise((resolve) => {
  let err = "";
  const timer = setTimeout(() => fail(`no DevTools endpoint from chromium within 15 s; stderr:\n${err}`), 15_000);
  browser.stderr.on("data", (d) => {
    err += d.toString();
    const m = err.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) {
      clearTimeout(timer);
      resolve(m[1]);
    }
  });
});
step(`chromium up, DevTools at ${wsUrl}`);

// ---- a minimal CDP client ---------------------------------------------------------------------
const ws = new WebSocket(wsUrl);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = () => reject(new Error("websocket error"));
}).catch((e) => fail(`connect to DevTools: ${e.message}`));
let nextId = 1;
const pending = new Map();
const listeners = [];
ws.onmessage = (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.id && pending.has(msg.id)) {
    const { resolve, reject, method } = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
    else resolve(msg.result);
  } else if (msg.method) {
    for (const l of [...listeners]) l(msg);
  }
};
function send(method, params = {}, sessionId) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params, sessionId }));
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, method });
    setTimeout(() => reject(new Error(`${method}: no answer in ${STEP_TIMEOUT} ms`)), STEP_TIMEOUT).unref();
  }).catch((e) => fail(e.message));
}
function waitEvent(method, sessionId, timeout = STEP_TIMEOUT) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`no ${method} within ${timeout} ms`), timeout);
    const l = (msg) => {
      if (msg.method === method && msg.sessionId === sessionId) {
        clearTimeout(timer);
        listeners.splice(listeners.indexOf(l), 1);
        resolve(msg.params);
      }
    };
    listeners.push(l);
  });
}

const { targetId } = await send("Target.createTarget", { url: "about:blank" });
const { sessionId: S } = await send("Target.attachToTarget", { targetId, flatten: true });
const cmd = (method, params) => send(method, params, S);
await cmd("Page.enable");
await cmd("Runtime.enable");
await cmd("Network.enable");
await cmd("DOM.enable");
await cmd("Emulation.setDeviceMetricsOverride", {
  width: 1280,
  height: 900,
  deviceScaleFactor: 1,
  mobile: false,
});

// Every document/subresource status, and every uncaught page exception.
const responses = [];
const exceptions = [];
listeners.push((msg) => {
  if (msg.sessionId !== S) return;
  if (msg.method === "Network.responseReceived") {
    const r = msg.params.response;
    responses.push({
      url: r.url,
      status: r.status,
      type: msg.params.type,
      securityState: r.securityState,
      tls: r.securityDetails ? `${r.securityDetails.protocol}, certificate ${r.securityDetails.subjectName} issued by ${r.securityDetails.issuer}` : null,
    });
  } else if (msg.method === "Runtime.exceptionThrown") {
    const d = msg.params.exceptionDetails;
    exceptions.push(`${d.text} ${d.exception?.description ?? ""}`);
  }
});

async function evaluate(expression) {
  const r = await cmd("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
  if (r.exceptionDetails) fail(`evaluate ${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
  return r.result.value;
}
async function waitFor(expression, what, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await evaluate(expression);
    if (v) return v;
    if (Date.now() > deadline) fail(`timed out waiting for ${what} (${expression})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
// The status of the last main-document response for a URL path.
function documentStatus(urlPath) {
  const hits = responses.filter((r) => r.type === "Document" && new URL(r.url).pathname === urlPath);
  return hits.length ? hits[hits.length - 1].status : null;
}
async function navigate(urlPath) {
  const loaded = waitEvent("Page.loadEventFired", S);
  const r = await cmd("Page.navigate", { url: BASE + urlPath });
  if (r.errorText) fail(`navigate ${urlPath}: ${r.errorText}`);
  await loaded;
}
// Clicks and waits for the page that the click navigates to.
async function clickAndLoad(selector) {
  const loaded = waitEvent("Page.loadEventFired", S);
  const ok = await evaluate(`(() => { const e = document.querySelector(${JSON.stringify(selector)}); if (!e) return false; e.click(); return true; })()`);
  check(ok, `no ${selector} to click`);
  await loaded;
}
async function screenshot(name) {
  const { data } = await cmd("Page.captureScreenshot", { format: "png" });
  const file = path.join(OUT, name);
  fs.writeFileSync(file, Buffer.from(data, "base64"));
  return file;
}

// ---- 1. home page -----------------------------------------------------------------------------
await navigate("/");
const wantTitle = fs.readFileSync(path.join(SITE, "index.html"), "utf8").match(/<title>([^<]*)<\/title>/)[1];
const title = await evaluate("document.title");
check(title === wantTitle, `title of / is ${JSON.stringify(title)}, want ${JSON.stringify(wantTitle)}`);
check(documentStatus("/") === 200, `GET / answered ${documentStatus("/")}`);
const h1 = await evaluate("document.querySelector('h1#title')?.textContent");
check(h1 === "It works.", `h1#title is ${JSON.stringify(h1)}`);
const styled = await evaluate("getComputedStyle(document.querySelector('.site-header')).display !== '' && document.styleSheets.length > 0 && document.styleSheets[0].cssRules.length > 0");
check(styled, "the stylesheet did not load");
if (HTTPS) {
  const protocol = await evaluate("location.protocol");
  check(protocol === "https:", `location.protocol of / is ${JSON.stringify(protocol)}, want "https:"`);
  const doc = responses.filter((r) => r.type === "Document" && new URL(r.url).pathname === "/").at(-1);
  check(doc.securityState === "secure", `/ came with securityState ${JSON.stringify(doc.securityState)}, want "secure"`);
  check(doc.tls, "/ came without TLS security details");
  step(`home page over https: ${doc.tls}`);
}
step(`home page: title ${JSON.stringify(title)}, stylesheet applied; screenshot ${await screenshot("home.png")}`);

// ---- 2. upload a file through the form --------------------------------------------------------
const name = `browser-upload-${process.pid}-${Date.now()}.txt`;
const content = `uploaded by headless chromium at ${new Date().toISOString()}\n`;
const localFile = path.join(OUT, name);
fs.writeFileSync(localFile, content);
await navigate("/upload.html");
const { root } = await cmd("DOM.getDocument", { depth: 0 });
const { nodeId } = await cmd("DOM.querySelector", { nodeId: root.nodeId, selector: "#file" });
check(nodeId, "no #file input on /upload.html");
await cmd("DOM.setFileInputFiles", { nodeId, files: [localFile] });
const chosen = await evaluate("document.getElementById('file').files[0]?.name");
check(chosen === name, `file input holds ${chosen}`);
await clickAndLoad("#upload-submit");
check(documentStatus("/uploads/") === 201, `upload POST answered ${documentStatus("/uploads/")}, want 201`);
const listed = await evaluate(`[...document.querySelectorAll('ul#saved a')].map(a => a.textContent)`);
check(Array.isArray(listed) && listed.includes(name), `201 page lists ${JSON.stringify(listed)}, not ${name}`);
const stored = path.join(SITE, "uploads", name);
check(fs.existsSync(stored), `${stored} not on disk after the upload`);
check(fs.readFileSync(stored, "utf8") === content, `${stored} differs from what was uploaded`);
step(`upload: 201 page lists ${name}; bytes on disk match`);

// ---- 3. delete it from the files page ----------------------------------------------------------
await navigate("/files.html");
const row = `tr[data-name=${JSON.stringify(name)}]`;
await waitFor(`!!document.querySelector(${JSON.stringify(row)})`, `row ${row}`);
step(`files page shows ${row}`);
await evaluate(`document.querySelector(${JSON.stringify(row + " button.delete")}).click()`);
await waitFor(`!document.querySelector(${JSON.stringify(row)})`, `row ${row} to go`);
const statusText = await waitFor(`(() => { const t = document.getElementById('status').textContent; return t.startsWith('Deleted') ? t : ''; })()`, "the 'Deleted' status");
check(!fs.existsSync(stored), `${stored} still on disk after the delete button`);
step(`delete: row gone, status "${statusText}", file gone from disk`);

// ---- 4. the CGI form, by POST -----------------------------------------------------------------
await navigate("/cgi-bin/form.py");
check(documentStatus("/cgi-bin/form.py") === 200, `GET /cgi-bin/form.py answered ${documentStatus("/cgi-bin/form.py")}`);
const typed = "Ada <Lovelace> & Co. ✓";
await evaluate(`document.getElementById('post-name').value = ${JSON.stringify(typed)}`);
await clickAndLoad("#form-post button[type=submit]");
const shown = await evaluate("document.getElementById('result-name')?.textContent");
check(shown === typed, `#result-name shows ${JSON.stringify(shown)}, want ${JSON.stringify(typed)}`);
const method = await evaluate("document.getElementById('result-method')?.textContent");
check(method === "POST", `#result-method shows ${JSON.stringify(method)}`);
step(`CGI form: POST echoed ${JSON.stringify(shown)}`);

// ---- 5. the cookie session counter -------------------------------------------------------------
const visits = [];
for (let i = 0; i < 2; i++) {
  await navigate("/cgi-bin/counter.py");
  const n = Number(await evaluate("document.getElementById('visit-count')?.textContent"));
  check(Number.isInteger(n), `#visit-count is not a number on visit ${i + 1}`);
  visits.push(n);
}
check(visits[0] === 1 && visits[1] === 2, `visit counts ${visits.join(" then ")}, want 1 then 2`);
step(`counter: visits ${visits.join(" -> ")}; screenshot ${await screenshot("counter.png")}`);

// ---- nothing broke on the way -----------------------------------------------------------------
// /favicon.ico is Chromium's own guess for pages without <link rel=icon> (the server's
// generated 201 page), not a link on the site.
const bad = responses.filter((r) => r.status >= 400 && new URL(r.url).pathname !== "/favicon.ico");
check(bad.length === 0, `error responses: ${JSON.stringify(bad)}`);
check(exceptions.length === 0, `page exceptions: ${exceptions.join("; ")}`);
if (HTTPS) {
  const insecure = responses.filter((r) => !r.url.startsWith("https://") || r.securityState !== "secure");
  check(insecure.length === 0, `responses not over verified https: ${JSON.stringify(insecure)}`);
}
step(`${responses.length} responses${HTTPS ? ", all over https and secure" : ""}, none an error; no page exceptions`);

finished = true;
ws.close();
const exited = new Promise((r) => browser.once("exit", r));
browser.kill("SIGTERM");
const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 3000))]);
if (!done) browser.kill("SIGKILL");
// Chromium's helper processes may still be writing the profile for a moment: cleaning it up is
// best effort (ci/browser.sh removes the whole temp dir anyway) and never fails the test.
try {
  fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
} catch (e) {
  console.log(`note: profile cleanup: ${e.code}`);
}
console.log("browser test passed");
process.exit(0);
