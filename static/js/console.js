// The live console of a server page: output, commands, status, stats and power,
// over the panel's WebSocket. Without JavaScript the page keeps its POST forms.
(() => {
  "use strict";

  const root = document.querySelector("[data-console]");
  if (!root || !("WebSocket" in window)) return;

  const MAX_LINES = 1000; // lines kept on screen; older ones are dropped
  const MAX_HISTORY = 100; // commands kept for the up and down arrows
  const SAMPLES = 60; // stats kept for the charts, about a minute
  const BACKOFF_MAX_MS = 30000;
  const STATUS_LABELS = {
    installing: "Installing",
    install_failed: "Install failed",
    offline: "Offline",
    starting: "Starting",
    running: "Running",
    stopping: "Stopping",
  };
  // What each power action needs, as Server.allows says on the server side.
  const ALLOWS = {
    start: ["offline"],
    stop: ["starting", "running"],
    restart: ["starting", "running", "offline"],
    kill: ["starting", "running", "stopping"],
  };

  const output = root.querySelector("[data-console-output]");
  const jump = root.querySelector("[data-console-jump]");
  const form = root.querySelector("[data-console-form]");
  const input = form.querySelector("input");
  const sendButton = form.querySelector("button");
  const connection = root.querySelector("[data-console-connection]");
  const stats = root.querySelector("[data-console-stats]");
  const badges = document.querySelectorAll("[data-server-status]");
  const power = document.querySelector(root.dataset.powerForm || "form.power");
  const nodeOnline = root.dataset.nodeOnline === "true";

  let socket = null; // the live socket, from panel.js
  let live = false;
  let relayUp = true;
  let pending = []; // lines waiting for the next frame, at most MAX_LINES
  let frameRequested = false;
  let history = [];
  let historyAt = 0;

  // ANSI colours: SGR codes become classes, every other escape is dropped.
  const ESCAPES =
    // eslint-disable-next-line no-control-regex
    /\x1b\[([0-9;?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f]/g;

  function applySgr(style, params) {
    const codes = params === "" ? [0] : params.split(";").map(Number);
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      if (code === 38 || code === 48) {
        // 256 colours and true colour are not ours to show: skip their numbers.
        i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 0;
      } else if (code === 0) {
        style.fg = null;
        style.bold = false;
      } else if (code === 1) style.bold = true;
      else if (code === 22) style.bold = false;
      else if (code === 39) style.fg = null;
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) {
        style.fg = code;
      }
    }
  }

  function renderLine(text, kind) {
    const line = document.createElement("div");
    line.className = "console-line" + (kind ? " console-" + kind : "");
    const style = { fg: null, bold: false };
    let at = 0;
    const piece = (end) => {
      if (end <= at) return;
      const chunk = text.slice(at, end);
      if (style.fg === null && !style.bold) {
        line.append(chunk);
        return;
      }
      const span = document.createElement("span");
      if (style.fg !== null) span.className = "ansi-" + style.fg;
      if (style.bold) span.classList.add("ansi-bold");
      span.textContent = chunk;
      line.append(span);
    };
    ESCAPES.lastIndex = 0;
    let match;
    while ((match = ESCAPES.exec(text)) !== null) {
      piece(match.index);
      if (match[2] === "m") applySgr(style, match[1]);
      at = ESCAPES.lastIndex;
    }
    piece(text.length);
    if (!line.firstChild) line.append("\u00a0");
    return line;
  }

  // Lines are added once a frame, so a flood of output costs one layout.
  function print(text, kind) {
    pending.push([String(text), kind]);
    // A hidden tab draws no frames: keep what would stay on screen, no more.
    if (pending.length > 2 * MAX_LINES) pending = pending.slice(-MAX_LINES);
    if (!frameRequested) {
      frameRequested = true;
      requestAnimationFrame(flush);
    }
  }

  function atBottom() {
    return output.scrollHeight - output.scrollTop - output.clientHeight < 8;
  }

  function flush() {
    frameRequested = false;
    const following = atBottom();
    const lines = document.createDocumentFragment();
    for (const [text, kind] of pending.slice(-MAX_LINES)) lines.append(renderLine(text, kind));
    pending = [];
    output.append(lines);
    let extra = output.childElementCount - MAX_LINES;
    while (extra-- > 0) output.firstElementChild.remove();
    if (following) output.scrollTop = output.scrollHeight;
    else jump.hidden = false;
  }

  output.addEventListener("scroll", () => {
    if (atBottom()) jump.hidden = true;
  });
  jump.addEventListener("click", () => {
    output.scrollTop = output.scrollHeight;
    jump.hidden = true;
  });

  // Status and connection

  function setStatus(state) {
    const label = STATUS_LABELS[state] || state;
    for (const badge of badges) {
      badge.className = "badge badge-" + state;
      badge.textContent = label;
    }
    root.dataset.status = state;
    if (state !== "starting" && state !== "running") {
      figure("cpu", "—");
      figure("uptime", "—");
    }
    if (!power || !nodeOnline) return;
    for (const button of power.querySelectorAll("button[name=action]")) {
      const allowed = (ALLOWS[button.value] || []).includes(state);
      button.disabled = !allowed;
      if (allowed) button.removeAttribute("title");
      else button.title = "Not while the server is " + label.toLowerCase();
    }
  }

  function showConnection() {
    let state = "reconnecting";
    let label = "Reconnecting…";
    if (live && relayUp) [state, label] = ["live", "Live"];
    else if (live) [state, label] = ["reconnecting", "Daemon reconnecting…"];
    else if (!socket || socket.attempts === 0) {
      [state, label] = ["connecting", "Connecting…"];
    }
    connection.dataset.state = state;
    connection.textContent = label;
    input.disabled = sendButton.disabled = !live;
  }

  function send(event, ...args) {
    return socket.send(event, ...args);
  }

  const HANDLERS = {
    "status": (state) => setStatus(String(state)),
    "console output": (line) => print(line),
    "install started": () => {
      setStatus("installing");
      print("Installing…", "install-notice");
    },
    "install output": (line) => print(line, "install"),
    "install completed": (result) => {
      const ok = Boolean(result && result.successful);
      setStatus(ok ? "offline" : "install_failed");
      print(ok ? "Install finished." : "Install failed.", "install-notice");
    },
    "stats": (figures) => showStats(figures || {}),
    "relay": (state, skipped) => {
      if (state === "behind") {
        // The panel dropped batches this page took too long for; the console so
        // far follows, so the screen starts again from it.
        output.replaceChildren();
        pending = [];
        print(`Skipped ${skipped} batches of output to catch up.`, "install-notice");
        return;
      }
      relayUp = state === "connected";
      showConnection();
    },
    "error": (message) => print(message, "error"),
    "daemon error": (message) => print("Daemon: " + message, "error"),
  };

  // Commands, with a history for the arrow keys

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const command = input.value.trim();
    if (!command) return;
    if (!send("send command", command)) {
      print("Not connected: the command was not sent.", "error");
      return;
    }
    history = history.filter((c) => c !== command).concat(command).slice(-MAX_HISTORY);
    historyAt = history.length;
    input.value = "";
  });

  input.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowUp" && event.key !== "ArrowDown") return;
    if (!history.length) return;
    event.preventDefault();
    const step = event.key === "ArrowUp" ? -1 : 1;
    historyAt = Math.max(0, Math.min(history.length, historyAt + step));
    input.value = history[historyAt] || "";
    input.setSelectionRange(input.value.length, input.value.length);
  });

  // Power buttons go over the socket while it is live; otherwise the form posts.
  if (power) {
    power.addEventListener("submit", (event) => {
      const action = event.submitter && event.submitter.value;
      // Without the daemon on the socket, the form posts as it would without JS.
      if (!action || !live || !relayUp) return;
      event.preventDefault();
      send("set state", action);
    });
  }

  // Stats: figures, and a chart of the last SAMPLES of a few of them

  const series = { cpu: [], memory: [], network: [] };
  let lastNetwork = null;

  function remember(name, value) {
    const values = series[name];
    values.push(value);
    if (values.length > SAMPLES) values.shift();
  }

  function formatBytes(bytes) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = Number(bytes) || 0;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit && value < 100 ? value.toFixed(1) : Math.round(value)) + " " + units[unit];
  }

  function formatUptime(ms) {
    let seconds = Math.floor((Number(ms) || 0) / 1000);
    const days = Math.floor(seconds / 86400);
    const hours = Math.floor((seconds % 86400) / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    seconds %= 60;
    if (days) return days + " d " + hours + " h";
    if (hours) return hours + " h " + minutes + " min";
    if (minutes) return minutes + " min " + seconds + " s";
    return seconds + " s";
  }

  function figure(name, text) {
    const element = stats.querySelector("[data-stat=" + name + "]");
    if (element) element.textContent = text;
  }

  function chart(name, top) {
    const line = stats.querySelector("[data-chart=" + name + "] polyline");
    const values = series[name];
    if (!line) return;
    if (values.length < 2) {
      line.setAttribute("points", "");
      return;
    }
    const high = Math.max(top || 0, ...values, 1);
    const step = 120 / (SAMPLES - 1);
    const start = SAMPLES - values.length;
    line.setAttribute("points", values.map((v, i) =>
      ((start + i) * step).toFixed(1) + "," + (30 - (28 * v) / high).toFixed(1)
    ).join(" "));
  }

  function showStats(s) {
    stats.hidden = false;
    const cpu = Number(s.cpu_percent) || 0;
    const memory = Number(s.memory_bytes) || 0;
    const rx = Number(s.network_rx_bytes) || 0;
    const tx = Number(s.network_tx_bytes) || 0;
    const now = Date.now();
    let rate = 0;
    if (lastNetwork && now > lastNetwork.at && rx + tx >= lastNetwork.total) {
      rate = ((rx + tx - lastNetwork.total) * 1000) / (now - lastNetwork.at);
    }
    lastNetwork = { at: now, total: rx + tx };

    figure("cpu", cpu.toFixed(1) + " %");
    figure("memory", formatBytes(memory) + (s.memory_limit_bytes
      ? " / " + formatBytes(s.memory_limit_bytes) : ""));
    figure("disk", formatBytes(s.disk_bytes) + (s.disk_limit_bytes
      ? " / " + formatBytes(s.disk_limit_bytes) : ""));
    figure("network", "↓ " + formatBytes(rx) + " · ↑ " + formatBytes(tx));
    figure("uptime", s.uptime_ms ? formatUptime(s.uptime_ms) : "—");

    remember("cpu", cpu);
    remember("memory", memory);
    remember("network", rate);
    chart("cpu", 100);
    chart("memory", Number(s.memory_limit_bytes) || 0);
    chart("network", 0);
  }

  setStatus(root.dataset.status);
  showConnection();
  socket = window.liveSocket(root.dataset.socket, {
    maxWaitMs: BACKOFF_MAX_MS,
    deflated: true,
    onOpen() {
      live = true;
      relayUp = true;
      showConnection();
      // The panel sends the status and the console so far with every connection.
      output.replaceChildren();
      pending = [];
      send("send stats");
    },
    onFrame(event, args) {
      const handler = HANDLERS[event];
      if (handler) handler(...args);
    },
    onClose() {
      live = false;
      showConnection();
    },
  });
})();
