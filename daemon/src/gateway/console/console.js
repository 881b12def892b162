// The console: polls /console/data.json every 5 seconds and fills the tables. Rates and
// charts come from the metric history (rates: the last sample; charts: the last hour); a
// shard's commits per second, from two polls.
"use strict";

const EVERY_MS = 5000;
let last = null;

function text(value) {
  const cell = document.createElement("td");
  cell.textContent = value;
  return cell;
}

function count(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 10) / 10);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) { n /= 1024; unit += 1; }
  return (unit === 0 ? n : n.toFixed(1)) + " " + units[unit];
}

function age(seconds) {
  if (seconds < 60) return seconds + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

// A rate over the last metric sample (the server's), per second.
function rate(data, id) {
  const value = data.rates[id];
  return value === undefined ? "–" : count(value);
}

function spark(points) {
  const cell = document.createElement("td");
  if (!points || points.length === 0) {
    cell.textContent = "no data yet";
    cell.className = "empty";
    return cell;
  }
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 180 28");
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  const top = Math.max(1, ...points.map((p) => p[1]));
  const xy = points.map((p) => [((p[0] - t0) / (t1 - t0)) * 178 + 1, 27 - (p[1] / top) * 25]);
  const line = xy.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
  const area = document.createElementNS(ns, "path");
  area.setAttribute("class", "area");
  area.setAttribute("d", line + " L" + xy[xy.length - 1][0].toFixed(1) + " 28 L" + xy[0][0].toFixed(1) + " 28 Z");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("class", "line");
  path.setAttribute("d", line);
  const title = document.createElementNS(ns, "title");
  title.textContent = "max " + count(top);
  svg.append(area, path, title);
  cell.append(svg);
  return cell;
}

function fill(id, rows, empty, columns) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    const row = document.createElement("tr");
    const cell = text(empty);
    cell.className = "empty";
    cell.colSpan = columns;
    row.append(cell);
    body.append(row);
    return;
  }
  for (const cells of rows) {
    const row = document.createElement("tr");
    row.append(...cells);
    body.append(row);
  }
}

function shown(id, list, total) {
  document.getElementById(id).textContent = total > list.length ? `(${list.length} of ${total})` : `(${total})`;
}

function render(data) {
  fill("queues", data.queues.map((q, i) => {
    const name = text(q.name);
    name.className = "name";
    const oldest = text(q.visible + q.inFlight + q.delayed > 0 ? age(q.oldestAgeSeconds) : "–");
    if (q.oldestAgeSeconds > 3600) oldest.className = "warn";
    return [name, text(count(q.visible)), text(count(q.inFlight)), text(count(q.delayed)), oldest,
      text(rate(data, `q${i}_sent`)), text(rate(data, `q${i}_received`)), text(rate(data, `q${i}_deleted`)),
      text(count(q.movedToDeadLetter)), spark(data.charts["q" + i])];
  }), "No queues yet.", 10);
  shown("queues-count", data.queues, data.queuesTotal);
  fill("topics", data.topics.map((t, i) => {
    const name = text(t.name);
    name.className = "name";
    const failed = text(count(t.failed));
    if (t.failed > 0) failed.className = "warn";
    return [name, text(t.subscriptions), text(rate(data, `t${i}_published`)), text(count(t.published)),
      text(count(t.delivered)), text(count(t.retried)), failed, spark(data.charts["t" + i])];
  }), "No topics yet.", 8);
  shown("topics-count", data.topics, data.topicsTotal);
  fill("streams", data.streams.map((s, i) => {
    const name = text(s.name);
    name.className = "name";
    const lag = text(age(Math.round(s.iteratorAgeMs / 1000)));
    if (s.iteratorAgeMs > 60000) lag.className = "warn";
    return [name, text(s.mode), text(s.openShards), text(rate(data, `s${i}_records_in`)),
      text(rate(data, `s${i}_bytes_in`)), text(rate(data, `s${i}_records_out`)),
      lag, text(count(s.throttled)), spark(data.charts["s" + i])];
  }), "No streams yet.", 9);
  shown("streams-count", data.streams, data.streamsTotal);
  fill("shards", data.shards.map((s) => {
    const before = last && last.shards.find((b) => b.shard === s.shard);
    const seconds = last ? (data.generatedMs - last.generatedMs) / 1000 : 0;
    const commits = before && seconds >= 1 ? count(Math.max(0, s.groupCommits - before.groupCommits) / seconds) : "–";
    const memory = text(bytes(s.memoryUsedBytes) + " of " + bytes(s.memoryBudgetBytes));
    if (s.memoryUsedBytes > 0.9 * s.memoryBudgetBytes) memory.className = "warn";
    return [text(s.shard), text(s.connections), memory, text(bytes(s.logBytes)), text(s.logSegments), text(commits),
      text((s.commitMeanMicros / 1000).toFixed(2) + " ms"), text(s.streamLogsOpen)];
  }), "No shard answered.", 8);
  const status = document.getElementById("status");
  status.textContent = data.region + " · updated " + new Date(data.generatedMs).toLocaleTimeString();
  status.className = "";
  document.body.dataset.loaded = "true";
  last = data;
}

async function poll() {
  try {
    const response = await fetch("/console/data.json", { cache: "no-store" });
    if (!response.ok) throw new Error(response.status + " " + (await response.text()));
    render(await response.json());
  } catch (error) {
    const status = document.getElementById("status");
    status.textContent = "cannot update: " + error.message;
    status.className = "stale";
  }
  setTimeout(poll, EVERY_MS);
}

poll();
