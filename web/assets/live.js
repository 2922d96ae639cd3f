// Live counts on the overview: every 5 s, the figures from /api/overview replace the numbers
// in the page. The page works without this; it only saves pressing Refresh.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  function update(data) {
    var totals = {};
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var parts = el.getAttribute("data-count").split(":");
      var queue = data.queues[parts[0]];
      var n = queue && queue.counts[parts[1]] ? queue.counts[parts[1]] : 0;
      el.textContent = String(n);
      el.classList.toggle("zero", n === 0);
    });
    Object.keys(data.queues).forEach(function (name) {
      var counts = data.queues[name].counts;
      Object.keys(counts).forEach(function (state) {
        totals[state] = (totals[state] || 0) + counts[state];
      });
    });
    document.querySelectorAll("[data-total]").forEach(function (el) {
      el.textContent = String(totals[el.getAttribute("data-total")] || 0);
    });
    document.querySelectorAll("[data-workers]").forEach(function (el) {
      el.textContent = String(data.live_workers);
    });
    if (status) {
      status.textContent = "Live: updated " + new Date(data.at).toLocaleTimeString() + ".";
    }
  }
  function poll() {
    fetch("/api/overview", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) { update(data); setTimeout(poll, 5000); })
      .catch(function () {
        if (status) { status.textContent = "Live updates stopped: reload the page."; }
      });
  }
  setTimeout(poll, 5000);
})();
