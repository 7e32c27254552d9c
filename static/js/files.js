// The file manager: select all, uploads with progress, the editor's Ctrl+S.
// Listeners sit on the document, so they outlive htmx swapping the list.
(() => {
  const MB = 1024 * 1024;

  document.addEventListener("change", (event) => {
    const all = event.target.closest("[data-select-all]");
    if (!all) return;
    for (const box of all.form.querySelectorAll('input[name="paths"]')) {
      box.checked = all.checked;
    }
  });

  function say(form, text, failed) {
    const status = form.querySelector("[data-upload-status]");
    status.textContent = text;
    status.classList.toggle("error", failed);
  }

  function size(bytes) {
    if (bytes >= MB) return (bytes / MB).toFixed(1) + " MB";
    return Math.ceil(bytes / 1024) + " KB";
  }

  // The panel checks again, and the daemon after it; this only says it sooner.
  function refusal(form, files) {
    const most = Number(form.dataset.uploadMaxFiles);
    if (most && files.length > most) {
      return `Choose at most ${most} files at a time; ${files.length} are chosen.`;
    }
    const total = files.reduce((sum, file) => sum + file.size, 0);
    const limit = Number(form.dataset.uploadLimit);
    if (total > limit) {
      return `${size(total)} is over this node's upload limit of ` +
        `${form.dataset.uploadLimitMb} MB; upload fewer or smaller files at a time.`;
    }
    const free = Number(form.dataset.diskFree);
    if (form.dataset.diskFree !== undefined && total > free) {
      return `${size(total)} do not fit in the ${size(free)} ` +
        "of disk this server has left; delete some files first.";
    }
    return null;
  }

  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-upload]");
    if (!form) return;
    event.preventDefault();
    const files = Array.from(form.querySelector('input[type="file"]').files);
    if (!files.length) {
      say(form, "Choose one or more files to upload.", true);
      return;
    }
    const refused = refusal(form, files);
    if (refused) {
      say(form, refused, true);
      return;
    }
    const progress = form.querySelector("[data-upload-progress]");
    const button = form.querySelector('button[type="submit"]');
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.setRequestHeader("X-CSRFToken", form.elements.csrfmiddlewaretoken.value);
    request.upload.addEventListener("progress", (step) => {
      if (!step.lengthComputable) return;
      progress.value = Math.round((step.loaded / step.total) * 100);
      say(form, `Uploading… ${progress.value} %`, false);
    });
    request.addEventListener("load", () => {
      let answer = {};
      try {
        answer = JSON.parse(request.responseText);
      } catch {
        // Not the panel's own answer: a proxy in front of it, most likely.
        answer = {
          message: request.status === 413
            ? "The upload is over the size the server in front of the panel " +
              "accepts; upload fewer or smaller files at a time."
            : `The panel answered ${request.status}; try again.`,
        };
      }
      if (request.status === 200 && answer.location) {
        window.location.assign(answer.location);
        return;
      }
      button.disabled = false;
      progress.hidden = true;
      say(form, answer.message || `The upload failed (${request.status}).`, true);
    });
    request.addEventListener("error", () => {
      button.disabled = false;
      progress.hidden = true;
      say(form, "The upload broke off: is the panel reachable? Try again.", true);
    });
    button.disabled = true;
    progress.value = 0;
    progress.hidden = false;
    say(form, "Uploading…", false);
    request.send(new FormData(form));
  });

  const editor = document.querySelector("[data-editor]");
  if (editor) {
    const text = editor.elements.content;
    let changed = false;
    text.addEventListener("input", () => { changed = true; });
    editor.addEventListener("submit", () => { changed = false; });
    text.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "s") {
        event.preventDefault();
        changed = false;
        editor.requestSubmit();
      }
    });
    window.addEventListener("beforeunload", (event) => {
      if (changed) event.preventDefault();
    });
  }
})();
