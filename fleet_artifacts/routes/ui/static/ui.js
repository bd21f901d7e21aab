// The browse page's only script: "Copy link" buttons put their URL on the clipboard.
// Served as a file (the page's Content-Security-Policy allows no inline script).
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const url = button.dataset.copy;
  const done = (label) => {
    const before = button.textContent;
    button.textContent = label;
    setTimeout(() => { button.textContent = before; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(url).then(() => done("Copied"), () => window.prompt("Copy this link:", url));
  } else {
    // Plain http on another host: no clipboard API; let the user copy it by hand.
    window.prompt("Copy this link:", url);
  }
});
