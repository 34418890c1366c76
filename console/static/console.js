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
  es.addEventListener("live", function (e) {
    // Keep the keyboard focus where it was across the redraw.
    var id = document.activeElement && document.activeElement.id;
    live.innerHTML = e.data;
    if (id && document.getElementById(id)) document.getElementById(id).focus();
    status.textContent = "live";
    status.className = "stream ok";
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
