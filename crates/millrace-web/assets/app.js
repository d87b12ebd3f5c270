// The dashboard's only script, served from the binary. The pages work without it; it adds
// live updates (polling the page's content), a pause switch for them, select-all, and a
// banner while the database does not answer. No inline handlers: the CSP forbids them.
(function () {
  "use strict";

  function bindSelectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      var boxes = document.querySelectorAll('#jobs input[name="id"]');
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
    });
  }

  function live() {
    var main = document.getElementById("content");
    if (!main || !main.dataset.live) return;
    var interval = parseInt(main.dataset.live, 10) || 3000;
    var banner = document.getElementById("live-error");
    var toggle = document.getElementById("live-toggle");
    var paused = window.localStorage.getItem("millrace-live-paused") === "1";
    var busy = false;

    function label() {
      if (toggle) toggle.textContent = paused ? "Resume updates" : "Pause updates";
    }
    label();
    if (toggle) {
      toggle.addEventListener("click", function () {
        paused = !paused;
        window.localStorage.setItem("millrace-live-paused", paused ? "1" : "0");
        label();
      });
    }

    function tick() {
      if (paused || busy) return;
      busy = true;
      fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Millrace-Fragment": "1" },
      })
        .then(function (res) {
          return res.text().then(function (text) {
            if (!res.ok) throw new Error("HTTP " + res.status + ": " + text.replace(/<[^>]*>/g, ""));
            if (main.dataset.reload) {
              window.location.reload();
              return;
            }
            // The server escaped every value in this HTML, as in the first render.
            main.innerHTML = text;
            banner.classList.add("hidden");
            document.body.dataset.lastUpdate = String(Date.now());
          });
        })
        .catch(function (err) {
          banner.textContent = "Live update failed (" + err.message + "); retrying.";
          banner.classList.remove("hidden");
        })
        .then(function () {
          busy = false;
        });
    }
    window.setInterval(tick, interval);
  }

  document.addEventListener("DOMContentLoaded", function () {
    bindSelectAll();
    live();
  });
})();
