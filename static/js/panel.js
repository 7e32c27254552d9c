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
// leaves no socket or timer behind when the page goes.
window.liveSocket = (path, { onOpen, onFrame, onClose, maxWaitMs }) => {
  const START_MS = 1000;
  let socket = null;
  let leaving = false;
  let attempts = 0;
  let timer = null;

  function connect() {
    clearTimeout(timer);
    timer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + path);
    socket.addEventListener("open", () => {
      attempts = 0;
      onOpen();
    });
    socket.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      for (const frame of Array.isArray(data) ? data : [data]) {
        if (frame && typeof frame.event === "string") {
          onFrame(frame.event, Array.isArray(frame.args) ? frame.args : []);
        }
      }
    });
    socket.addEventListener("close", () => {
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
