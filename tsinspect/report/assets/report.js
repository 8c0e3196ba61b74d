// tsinspect HTML report: filter box, current section in the navigation, links into collapsed blocks.
(function () {
  "use strict";
  var input = document.getElementById("q");
  var status = document.getElementById("q-status");
  var links = Array.prototype.slice.call(document.querySelectorAll("nav#toc li a"));
  var sections = links.map(function (a) { return document.getElementById(a.getAttribute("href").slice(1)); });
  var rows = document.querySelectorAll("table.filter tbody tr");
  var blocks = document.querySelectorAll("details.searchable");

  function filter(query) {
    var q = query.trim().toLowerCase();
    var hits = 0;
    rows.forEach(function (tr) {
      var match = !q || tr.textContent.toLowerCase().indexOf(q) >= 0;
      tr.hidden = !match;
      if (q && match) { hits++; }
    });
    blocks.forEach(function (details) {
      var lines = details.querySelectorAll(".line");
      var found = false;
      lines.forEach(function (line) {
        var match = q && line.textContent.toLowerCase().indexOf(q) >= 0;
        line.classList.toggle("hit", !!match);
        if (match) { hits++; found = true; }
      });
      if (!q) {
        details.classList.remove("dim");
        if (details.dataset.open !== "1") { details.open = false; }
      } else {
        details.open = found;
        details.classList.toggle("dim", !found);
      }
    });
    status.textContent = q ? hits + (hits === 1 ? " match" : " matches") : "";
    document.body.dataset.query = q;
  }

  function current() {
    var top = window.innerHeight * 0.25;
    var index = 0;
    sections.forEach(function (section, i) {
      if (section && section.getBoundingClientRect().top <= top) { index = i; }
    });
    links.forEach(function (a, i) { a.setAttribute("aria-current", i === index ? "true" : "false"); });
  }

  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (!target) { return; }
    for (var node = target; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") { node.open = true; }
    }
    target.scrollIntoView();
  }

  var timer = null;
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { filter(input.value); }, 120);
  });
  blocks.forEach(function (details) { details.dataset.open = details.open ? "1" : "0"; });
  window.addEventListener("hashchange", reveal);
  window.addEventListener("scroll", current, { passive: true });
  var initial = new URLSearchParams(location.search).get("q");
  if (initial) { input.value = initial; filter(initial); }
  reveal();
  current();
})();
