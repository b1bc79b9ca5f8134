// Tollgate's own script: confirmation before actions, and the live image page. The pages work without it.
(function () {
  "use strict";

  // Every action form asks before it posts (the server still insists on a reason and the CSRF token).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });

  // The image page: while the image is vetted (or being moved), poll its fragment and swap the parts that
  // changed, keeping which finding groups the reader opened or closed.
  var root = document.querySelector("[data-live-url]");
  if (!root) {
    return;
  }
  var url = root.getAttribute("data-live-url");
  var interval = 1000;
  var delay = interval;

  function isLive() {
    return root.getAttribute("data-live") === "on";
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("[data-live-part]").forEach(function (fresh) {
      var here = document.getElementById(fresh.id);
      if (!here || here.outerHTML === fresh.outerHTML) {
        return;
      }
      var opened = {};
      here.querySelectorAll("details[id]").forEach(function (d) { opened[d.id] = d.open; });
      var imported = document.importNode(fresh, true);
      imported.querySelectorAll("details[id]").forEach(function (d) {
        if (Object.prototype.hasOwnProperty.call(opened, d.id)) { d.open = opened[d.id]; }
      });
      here.replaceWith(imported);
    });
  }

  function poll() {
    fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        var state = response.headers.get("X-Tollgate-Live");
        return response.text().then(function (text) { return { state: state, text: text }; });
      })
      .then(function (answer) {
        swap(answer.text);
        root.setAttribute("data-live", answer.state === "on" ? "on" : "off");
        delay = interval;
      })
      .catch(function () {
        delay = Math.min(delay * 2, 15000); // back off while the server is unreachable
      })
      .then(function () {
        if (isLive()) {
          window.setTimeout(poll, delay);
        }
      });
  }

  if (isLive()) {
    window.setTimeout(poll, delay);
  }
})();
