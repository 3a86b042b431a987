// files.html: list /uploads/ from the server's autoindex page and delete entries.
//
// The autoindex page is nginx-shaped: a <pre> holding one line per entry,
//   <a href="NAME">NAME</a>      26-Nov-2026 12:00     1234
// where NAME is percent-encoded in href, directories end with "/" and show "-" as size.
// We only rely on the <a href>; date and size are read from the text after the link
// when present, and left blank otherwise.
"use strict";

const UPLOADS = "/uploads/";

const statusEl = document.getElementById("status");
const table = document.getElementById("files");
const tbody = table.querySelector("tbody");
const emptyEl = document.getElementById("empty");

function setStatus(text, kind) {
  statusEl.textContent = text;
  statusEl.className = "status" + (kind ? " " + kind : "");
}

function formatSize(bytes) {
  if (bytes < 1024) return bytes + " B";
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = bytes, i = -1;
  do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
  return v.toFixed(v < 10 ? 1 : 0) + " " + units[i];
}

// Turn an href from the listing into an entry name relative to /uploads/,
// or null for anything that is not a direct child (../, absolute elsewhere, query links).
function entryName(href) {
  let url;
  try { url = new URL(href, location.origin + UPLOADS); } catch (_) { return null; }
  if (url.origin !== location.origin || !url.pathname.startsWith(UPLOADS)) return null;
  let rest = url.pathname.slice(UPLOADS.length);
  if (rest === "" || url.search) return null;
  const isDir = rest.endsWith("/");
  if (isDir) rest = rest.slice(0, -1);
  if (rest.includes("/")) return null;
  let name;
  try { name = decodeURIComponent(rest); } catch (_) { return null; }
  if (name === "" || name === "." || name === "..") return null;
  return { name, isDir };
}

// Text between this link and the next line break: "   26-Nov-2026 12:00     1234".
function trailingText(a) {
  let text = "";
  for (let n = a.nextSibling; n && n.nodeName !== "A"; n = n.nextSibling) {
    text += n.textContent;
    if (text.includes("\n")) break;
  }
  return text.split("\n")[0].trim();
}

function parseListing(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  let links = doc.querySelectorAll("pre a");
  if (links.length === 0) links = doc.querySelectorAll("a");
  const entries = [];
  const seen = new Set();
  for (const a of links) {
    const e = entryName(a.getAttribute("href") || "");
    if (!e || seen.has(e.name)) continue;
    seen.add(e.name);
    const words = trailingText(a).split(/\s+/).filter(Boolean);
    const last = words.length ? words[words.length - 1] : "";
    e.size = /^\d+$/.test(last) ? Number(last) : null;
    e.modified = words.length > 1 ? words.slice(0, -1).join(" ") : "";
    entries.push(e);
  }
  return entries;
}

function render(entries) {
  tbody.replaceChildren();
  for (const e of entries) {
    const tr = document.createElement("tr");
    tr.dataset.name = e.name;

    const nameTd = document.createElement("td");
    const link = document.createElement("a");
    link.href = UPLOADS + encodeURIComponent(e.name) + (e.isDir ? "/" : "");
    link.textContent = e.name + (e.isDir ? "/" : "");
    nameTd.append(link);

    const modTd = document.createElement("td");
    modTd.textContent = e.modified;

    const sizeTd = document.createElement("td");
    sizeTd.className = "num";
    if (e.size !== null) {
      sizeTd.textContent = formatSize(e.size);
      sizeTd.title = e.size + " bytes";
    } else {
      sizeTd.textContent = e.isDir ? "—" : "";
    }

    const actTd = document.createElement("td");
    if (!e.isDir) {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "delete";
      btn.textContent = "Delete";
      btn.setAttribute("aria-label", "Delete " + e.name);
      btn.addEventListener("click", () => remove(e.name, btn));
      actTd.append(btn);
    }

    tr.append(nameTd, modTd, sizeTd, actTd);
    tbody.append(tr);
  }
  table.hidden = entries.length === 0;
  emptyEl.hidden = entries.length !== 0;
}

async function refresh() {
  try {
    const res = await fetch(UPLOADS, { cache: "no-store", headers: { Accept: "text/html" } });
    if (!res.ok) throw new Error("GET " + UPLOADS + " → " + res.status + " " + res.statusText);
    const entries = parseListing(await res.text());
    render(entries);
    return entries;
  } catch (err) {
    render([]);
    emptyEl.hidden = true;
    setStatus("Could not load the listing: " + err.message, "error");
    throw err;
  }
}

async function remove(name, btn) {
  btn.disabled = true;
  setStatus("Deleting " + name + "…");
  let res;
  try {
    res = await fetch(UPLOADS + encodeURIComponent(name), { method: "DELETE" });
  } catch (err) {
    btn.disabled = false;
    setStatus("Delete failed: " + err.message, "error");
    return;
  }
  try { await refresh(); } catch (_) { return; }
  if (res.status === 204 || res.ok) {
    setStatus("Deleted " + name + " (" + res.status + ").", "ok");
  } else {
    setStatus("Could not delete " + name + ": " + res.status + " " + res.statusText, "error");
  }
}

async function load() {
  setStatus("Loading…");
  try {
    const entries = await refresh();
    setStatus(entries.length === 1 ? "1 entry." : entries.length + " entries.", "ok");
  } catch (_) { /* status already set */ }
}

document.getElementById("refresh").addEventListener("click", load);
load();
