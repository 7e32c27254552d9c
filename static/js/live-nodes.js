// Nodes' status badges and latencies, patched in place after each heartbeat sweep.
// The page as rendered stays right without it; this only keeps it fresh.
(() => {
  "use strict";

  if (!document.querySelector("[data-node-id]") || !("WebSocket" in window)) return;

  const BACKOFF_START_MS = 1000;
  const BACKOFF_MAX_MS = 60000;
  const SLOW_TITLE = "Over 50 ms: consoles and power actions will feel slow";

  let socket = null;
  let leaving = false;
  let attempts = 0;
  let reconnectTimer = null;

  function badge(node) {
    const online = node.status === "online";
    const element = document.createElement("span");
    element.className = "badge badge-" + (online ? "online" : "offline");
    element.textContent = online ? "Online" : "Offline";
    if (online) element.title = "Answered just now";
    else if (node.reason) element.title = "Last heartbeat failed: " + node.reason;
    return element;
  }

  function latency(node) {
    const element = document.createElement("span");
    if (node.latency_ms === null || node.latency_ms === undefined) {
      element.className = "muted";
      element.textContent = "—";
      return element;
    }
    element.className = "latency" + (node.slow ? " latency-slow" : "");
    if (node.slow) element.title = SLOW_TITLE;
    element.textContent = node.latency_ms + " ms";
    return element;
  }

  function patch(nodes) {
    for (const node of nodes) {
      const id = CSS.escape(String(node.id));
      for (const was of document.querySelectorAll(
        `[data-node-id="${id}"][data-node-status]`
      )) {
        const now = badge(node);
        now.dataset.nodeId = node.id;
        now.dataset.nodeStatus = node.status;
        was.replaceWith(now);
      }
      for (const was of document.querySelectorAll(
        `[data-node-id="${id}"][data-node-latency]`
      )) {
        const now = latency(node);
        now.dataset.nodeId = node.id;
        now.dataset.nodeLatency = "";
        was.replaceWith(now);
      }
      if (node.last_heartbeat) {
        for (const age of document.querySelectorAll(
          `[data-node-id="${id}"][data-node-heartbeat]`
        )) {
          const when = document.createElement("time");
          when.dateTime = node.last_heartbeat;
          when.title = new Date(node.last_heartbeat).toString();
          const seconds = Math.max(
            0,
            Math.round((Date.now() - Date.parse(node.last_heartbeat)) / 1000)
          );
          const ago = seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
          when.textContent =
            (node.status === "online" ? "answered " : "last answered ") + ago + " ago";
          age.replaceChildren(when);
        }
      }
    }
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws/nodes/");
    socket.addEventListener("open", () => {
      attempts = 0;
      document.documentElement.dataset.liveNodes = "live";
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.event === "node status" && Array.isArray(frame.args)) {
        patch(frame.args);
      }
    });
    socket.addEventListener("close", () => {
      socket = null;
      document.documentElement.dataset.liveNodes = "down";
      if (leaving) return;
      attempts += 1;
      const wait = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** (attempts - 1));
      reconnectTimer = setTimeout(connect, wait * (0.75 + Math.random() / 2));
    });
  }

  window.addEventListener("pagehide", () => {
    leaving = true;
    clearTimeout(reconnectTimer);
    if (socket) socket.close();
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    leaving = false;
    attempts = 0;
    connect();
  });

  connect();
})();
