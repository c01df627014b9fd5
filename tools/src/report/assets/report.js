// Interactive timeline of the slim report (inlined; no external resources). Reads the JSON in
// each <script type="application/json" class="timeline-data">, draws lanes of slices as SVG,
// zooms with the wheel, pans by dragging, resets on double-click. When done it sets
// data-rendered (items drawn) on each timeline and data-timeline-rendered on <html>, which the
// report test checks.
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var LANE_H = 16, LANE_GAP = 3, LABEL_W = 150, AXIS_H = 22;

  function el(name, attrs, parent) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]); }
    if (parent) parent.appendChild(e);
    return e;
  }

  function fmtUs(us) {
    if (us >= 1e6) return (us / 1e6).toFixed(us >= 1e7 ? 1 : 2) + " s";
    if (us >= 1e3) return (us / 1e3).toFixed(us >= 1e4 ? 1 : 2) + " ms";
    return us.toFixed(us >= 10 ? 0 : 1) + " µs";
  }

  function niceStep(span, n) {
    var raw = span / n, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }

  function Timeline(host, data) {
    this.host = host;
    this.data = data;
    this.v0 = 0;
    this.v1 = Math.max(data.t1, 1);
    this.width = Math.max(host.clientWidth || 900, 400);
    var h = AXIS_H + data.lanes.length * (LANE_H + LANE_GAP) + 6;
    this.svg = el("svg", { width: this.width, height: h, viewBox: "0 0 " + this.width + " " + h,
                           role: "img", "aria-label": "timeline" }, host);
    this.drawn = 0;
    this.bind();
    this.render();
  }

  Timeline.prototype.x = function (t) {
    return LABEL_W + (t - this.v0) / (this.v1 - this.v0) * (this.width - LABEL_W - 8);
  };

  Timeline.prototype.render = function () {
    var svg = this.svg, d = this.data, self = this;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var plotW = this.width - LABEL_W - 8;
    var grid = el("g", { "class": "grid axis" }, svg);
    var step = niceStep(this.v1 - this.v0, Math.max(2, Math.floor(plotW / 110)));
    for (var t = Math.ceil(this.v0 / step) * step; t <= this.v1; t += step) {
      var gx = this.x(t);
      el("line", { x1: gx, x2: gx, y1: AXIS_H - 4, y2: svg.getAttribute("height") }, grid);
      var lab = el("text", { x: gx + 2, y: 12 }, grid);
      lab.textContent = fmtUs(t);
    }
    var drawn = 0;
    d.lanes.forEach(function (lane, i) {
      var y = AXIS_H + i * (LANE_H + LANE_GAP);
      var name = el("text", { x: 4, y: y + LANE_H - 4 }, svg);
      name.textContent = lane.name;
      var g = el("g", { "class": "tl-" + lane.cls }, svg);
      lane.items.forEach(function (it) {
        var s = it[0], e = it[0] + it[1];
        if (e < self.v0 || s > self.v1) return;
        var x0 = Math.max(self.x(s), LABEL_W), x1 = Math.min(self.x(e), LABEL_W + plotW);
        var r = el("rect", { x: x0, y: y, width: Math.max(x1 - x0, 0.6), height: LANE_H }, g);
        var tip = el("title", {}, r);
        tip.textContent = it[2] + " — " + fmtUs(it[1]) + " at " + fmtUs(it[0]);
        drawn++;
      });
    });
    this.drawn = drawn;
  };

  Timeline.prototype.bind = function () {
    var self = this, drag = null;
    this.svg.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var rect = self.svg.getBoundingClientRect();
      var px = (ev.clientX - rect.left) * (self.width / rect.width);
      var f = Math.min(Math.max((px - LABEL_W) / (self.width - LABEL_W - 8), 0), 1);
      var at = self.v0 + f * (self.v1 - self.v0);
      var k = ev.deltaY < 0 ? 0.8 : 1.25;
      var span = Math.max((self.v1 - self.v0) * k, 1);
      self.v0 = Math.max(at - f * span, 0);
      self.v1 = Math.min(self.v0 + span, Math.max(self.data.t1, 1));
      self.render();
    }, { passive: false });
    this.svg.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, v0: self.v0, v1: self.v1 }; });
    window.addEventListener("mouseup", function () { drag = null; });
    this.svg.addEventListener("mousemove", function (ev) {
      if (!drag) return;
      var rect = self.svg.getBoundingClientRect();
      var dt = (ev.clientX - drag.x) * (self.width / rect.width) / (self.width - LABEL_W - 8) * (drag.v1 - drag.v0);
      var span = drag.v1 - drag.v0;
      self.v0 = Math.min(Math.max(drag.v0 - dt, 0), Math.max(self.data.t1 - span, 0));
      self.v1 = self.v0 + span;
      self.render();
    });
    this.svg.addEventListener("dblclick", function () {
      self.v0 = 0; self.v1 = Math.max(self.data.t1, 1); self.render();
    });
  };

  function main() {
    var total = 0;
    var hosts = document.querySelectorAll(".timeline[data-src]");
    for (var i = 0; i < hosts.length; i++) {
      var host = hosts[i];
      var src = document.getElementById(host.getAttribute("data-src"));
      var data = JSON.parse(src.textContent);
      var tl = new Timeline(host, data);
      host.setAttribute("data-rendered", String(tl.drawn));
      total += tl.drawn;
    }
    document.documentElement.setAttribute("data-timeline-rendered", String(total));
  }

  main();
})();
