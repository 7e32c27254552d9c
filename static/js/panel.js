// Small progressive touches; every page works without them.
document.addEventListener("click", async (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    const source = document.querySelector(copy.dataset.copy);
    const label = copy.textContent;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      copy.textContent = "Copied";
    } catch {
      window.getSelection().selectAllChildren(source);
      copy.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { copy.textContent = label; }, 2000);
  }
  const confirmable = event.target.closest("[data-confirm]");
  if (confirmable && !window.confirm(confirmable.dataset.confirm)) {
    event.preventDefault();
  }
});

// A WebSocket to the panel for a live page: it reconnects with a growing, jittered
// wait, hands on each frame (a message holds one frame or an array of them), and
// leaves no socket or timer behind when the page goes. With `deflated`, and where
// the browser can inflate, the panel sends busy output as raw-deflated binary
// messages; they are inflated in order with the text ones.
window.liveSocket = (path, { onOpen, onFrame, onClose, maxWaitMs, deflated }) => {
  const START_MS = 1000;
  const inflating = Boolean(deflated) && "DecompressionStream" in window;
  const url = inflating
    ? path + (path.includes("?") ? "&" : "?") + "batches=deflate-raw"
    : path;
  let socket = null;
  let leaving = false;
  let attempts = 0;
  let timer = null;
  let connections = 0;

  function handle(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      return;
    }
    for (const frame of Array.isArray(data) ? data : [data]) {
      if (frame && typeof frame.event === "string") {
        onFrame(frame.event, Array.isArray(frame.args) ? frame.args : []);
      }
    }
  }

  function inflate(buffer) {
    const stream = new Blob([buffer]).stream()
      .pipeThrough(new DecompressionStream("deflate-raw"));
    return new Response(stream).text();
  }

  function connect() {
    clearTimeout(timer);
    timer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const current = new WebSocket(scheme + "//" + location.host + url);
    const number = ++connections;
    socket = current;
    current.binaryType = "arraybuffer";
    // Inflating is asynchronous: every message waits for the one before it, and
    // none from a socket that has since been replaced is handed on.
    let queue = Promise.resolve();
    current.addEventListener("open", () => {
      attempts = 0;
      onOpen();
    });
    current.addEventListener("message", (event) => {
      if (!inflating) {
        handle(event.data);
        return;
      }
      const text = typeof event.data === "string"
        ? Promise.resolve(event.data)
        : inflate(event.data);
      queue = queue
        .then(() => text)
        .then((data) => { if (connections === number) handle(data); })
        .catch(() => {});
    });
    current.addEventListener("close", () => {
      if (socket !== current) return;
      socket = null;
      if (!leaving) attempts += 1;
      onClose();
      if (leaving) return;
      const wait = Math.min(maxWaitMs, START_MS * 2 ** (attempts - 1));
      timer = setTimeout(connect, wait * (0.75 + Math.random() / 2));
    });
  }

  window.addEventListener("pagehide", () => {
    leaving = true;
    clearTimeout(timer);
    if (socket) socket.close();
  });
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    leaving = false;
    attempts = 0;
    connect();
  });
  window.addEventListener("online", () => {
    if (!socket && !leaving) connect();
  });
  connect();

  return {
    send(event, ...args) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(JSON.stringify({ event, args }));
      return true;
    },
    get attempts() {
      return attempts;
    },
  };
};
