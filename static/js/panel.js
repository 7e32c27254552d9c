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
