// Nodes' status badges and latencies, patched in place after each heartbeat sweep.
// The page as rendered stays right without it; this only keeps it fresh.
(() => {
  "use strict";

  if (!document.querySelector("[data-node-id]") || !("WebSocket" in window)) return;

  const BACKOFF_MAX_MS = 60000;
  const SLOW_TITLE = "Over 50 ms: consoles and power actions will feel slow";

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

  window.liveSocket("/ws/nodes/", {
    maxWaitMs: BACKOFF_MAX_MS,
    onOpen() {
      document.documentElement.dataset.liveNodes = "live";
    },
    onFrame(event, args) {
      if (event === "node status") patch(args);
    },
    onClose() {
      document.documentElement.dataset.liveNodes = "down";
    },
  });
})();
