// shoal console: live updates of the page's live part from the server's
// event stream (GET /events). No framework, no build step; the pages work
// without it, only without updating themselves.
"use strict";
(function () {
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  var page = main && main.getAttribute("data-live");
  if (!page || !live || !window.EventSource) return;
  var status = document.createElement("p");
  status.className = "stream";
  status.setAttribute("role", "status");
  live.parentNode.insertBefore(status, live);
  // The page's own query (?service=NAME) narrows its stream too.
  var es = new EventSource("/events?page=" + encodeURIComponent(page) + location.search.replace(/^\?/, "&"));
  // A redraw replaces the links a keyboard user may be on: while the focus
  // is inside the live part, hold the newest update and draw it when the
  // focus leaves.
  var pending = null;
  function draw(html) {
    live.innerHTML = html;
    status.textContent = "live";
    status.className = "stream ok";
  }
  es.addEventListener("live", function (e) {
    if (live.contains(document.activeElement)) {
      pending = e.data;
      status.textContent = "live (update held while you are in the table)";
      return;
    }
    draw(e.data);
  });
  live.addEventListener("focusout", function (e) {
    if (pending !== null && !live.contains(e.relatedTarget)) {
      var html = pending;
      pending = null;
      draw(html);
    }
  });
  es.addEventListener("problem", function (e) {
    status.textContent = e.data;
    status.className = "stream bad";
  });
  es.onerror = function () {
    status.className = "stream warn";
    if (es.readyState === EventSource.CLOSED) {
      // Refused (the session ended, or too many live pages): the browser
      // gives up; a reload shows why, or the login page.
      status.textContent = "not live any more: ";
      var a = document.createElement("a");
      a.href = location.pathname;
      a.textContent = "reload";
      status.appendChild(a);
      return;
    }
    status.textContent = "reconnecting…";
  };
})();
