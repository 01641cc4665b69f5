// sqlctl console: live updates without a page reload.
//
// The server sends `change` events (the namespace/name of each request written, or `*`) on
// /events. The list page refetches its table; a detail page refetches its live sections when its
// own request changed. The review section (SQL and decision forms) is never swapped under an open
// form: if the request moved on, a banner asks the reviewer to reload, and the server refuses the
// stale form anyway. Without EventSource (or when the stream is refused) the page polls.
(function () {
  "use strict";
  var body = document.body;
  var page = body.getAttribute("data-page");
  var key = body.getAttribute("data-key");
  if (page !== "list" && page !== "detail") return;

  var live = document.getElementById("live");
  function indicate(state, title) {
    if (!live) return;
    live.className = "live " + state;
    live.title = title;
    live.setAttribute("data-state", state);
  }

  var timer = null, busy = false, again = false, stopped = false;
  function schedule() {
    if (timer || stopped) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 150);
  }

  function fragmentUrl() {
    return page === "list" ? "/fragment/list" + window.location.search : "/requests/" + key + "/fragment";
  }

  function swap(doc, id) {
    var fresh = doc.getElementById(id), old = document.getElementById(id);
    if (fresh && old) old.replaceWith(document.importNode(fresh, true));
  }

  function review(doc) {
    var fresh = doc.getElementById("review"), old = document.getElementById("review");
    if (!fresh || !old) return;
    var same = fresh.getAttribute("data-binding") === old.getAttribute("data-binding");
    if (old.getAttribute("data-decidable") === "1") {
      if (!same) {
        var stale = document.getElementById("stale");
        if (stale) stale.hidden = false;
        old.classList.add("stale");
      }
      return;
    }
    if (!same || fresh.innerHTML !== old.innerHTML) swap(doc, "review");
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(fragmentUrl(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        if (res.status === 401) {
          stopped = true;
          indicate("off", "signed out: reload the page to sign in again");
          if (source) source.close();
          return null;
        }
        if (!res.ok && res.status !== 404) return null;
        return res.text();
      })
      .then(function (text) {
        if (text === null) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        if (page === "list") {
          swap(doc, "list");
        } else {
          swap(doc, "status");
          review(doc);
          swap(doc, "trail");
        }
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { indicate("wait", "connection lost: retrying"); })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  var source = null, polling = null;
  function poll() {
    if (polling) return;
    indicate("poll", "live updates by polling");
    polling = setInterval(function () { if (!stopped) refresh(); }, 5000);
  }

  if (!window.EventSource) { poll(); return; }
  source = new EventSource("/events");
  source.addEventListener("change", function (e) {
    if (page === "list" || e.data === "*" || e.data === key) schedule();
  });
  source.onopen = function () {
    indicate("on", "live updates on");
    // Whatever changed between rendering this page and (re)connecting was not announced.
    schedule();
  };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) { poll(); } else { indicate("wait", "reconnecting"); }
  };
})();
