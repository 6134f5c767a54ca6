// The console's dashboard refreshes itself: every few seconds (data-refresh-seconds) it fetches
// the fragment again (same origin, the staff session's cookie) and swaps it in. Nothing else is
// loaded; a failed fetch marks the dashboard stale instead of clearing it.
(function () {
  "use strict";
  var box = document.getElementById("console-dashboard");
  if (!box) { return; }
  function seconds() {
    var inner = box.querySelector(".console");
    var value = inner ? parseInt(inner.getAttribute("data-refresh-seconds"), 10) : 15;
    return (value > 0 ? value : 15) * 1000;
  }
  function refresh() {
    if (document.hidden) { schedule(); return; }
    fetch(box.getAttribute("data-url"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) { box.innerHTML = html; box.classList.remove("console-stale"); })
      .catch(function () { box.classList.add("console-stale"); })
      .then(schedule);
  }
  function schedule() { window.setTimeout(refresh, seconds()); }
  schedule();
})();
