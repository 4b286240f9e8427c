/* Charts of co2logserver's pages, drawn with the vendored uPlot.
 *
 * The pages render their data as tables and links; this script only draws on top,
 * so they stay usable without JavaScript. Every chart is kept in window.co2charts
 * (by reading type, or "data" on the download page) for the browser tests.
 */
(function () {
  "use strict";

  var COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989",
                "#0550ae", "#57606a"];
  var charts = (window.co2charts = {});

  function utcDate(ts) {
    return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  }

  /* Axis labels in UTC and 24 h time: dates for long ticks, else date and time. */
  function timeTicks(u, splits, _axis, _space, incr) {
    return splits.map(function (ts) {
      var iso = new Date(ts * 1e3).toISOString();
      return incr >= 86400 ? iso.slice(0, 10) : iso.slice(5, 10) + "\n" + iso.slice(11, 16);
    });
  }

  function chartWidth(el) {
    return Math.max(280, el.clientWidth || 600);
  }

  /* A y axis as wide as its longest tick label (a fixed width clipped
   * "1,000,000,000" to "000,000,000"): uPlot asks again after each redraw. */
  function axisSize(u, values, axisIdx, cycleNum) {
    var axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    var size = axis.ticks.size + axis.gap;
    var longest = 0;
    u.ctx.font = axis.font[0];
    (values || []).forEach(function (text) {
      longest = Math.max(longest, u.ctx.measureText(String(text)).width);
    });
    return Math.ceil(size + longest / (window.devicePixelRatio || 1)) + 2;
  }

  /* A uPlot chart in ``el``; ``yAxes`` is a unit label or a list of y axes. */
  function draw(el, series, data, yAxes, height, xLabel) {
    if (!Array.isArray(yAxes)) yAxes = [{ label: yAxes || "" }];
    yAxes.forEach(function (axis) { axis.size = axisSize; });
    var opts = {
      width: chartWidth(el),
      height: height || 240,
      tzDate: utcDate,
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      series: [{ label: xLabel || "time (UTC)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" }]
        .concat(series),
      axes: [{ values: timeTicks, space: 60 }].concat(yAxes),
    };
    if (series.length === 3 && series[0].label === "mean") {
      opts.bands = [{ series: [3, 2], fill: "rgba(31,111,235,0.12)" }];
    }
    var chart = new uPlot(opts, data, el);
    el.co2chart = chart;
    return chart;
  }

  /* The step between neighbouring buckets that most often occurs. */
  function usualStep(starts, interval) {
    var steps = [];
    for (var i = 1; i < starts.length; i++) steps.push(starts[i] - starts[i - 1]);
    steps.sort(function (a, b) { return a - b; });
    return Math.max(interval, steps.length ? steps[steps.length >> 1] : interval);
  }

  /* Buckets of one type as uPlot columns. A sensor that reports less often than
   * the bucket length leaves every other bucket empty, so only a hole much wider
   * than the usual step breaks the line (a null). */
  function bucketColumns(buckets, interval) {
    var starts = buckets.map(function (b) { return b.start; });
    var hole = 2.5 * usualStep(starts, interval);
    var x = [], mean = [], min = [], max = [];
    buckets.forEach(function (b, i) {
      if (i > 0 && b.start - starts[i - 1] > hole) {
        x.push(starts[i - 1] + interval);
        mean.push(null); min.push(null); max.push(null);
      }
      x.push(b.start); mean.push(b.mean); min.push(b.min); max.push(b.max);
    });
    return [x, mean, min, max];
  }

  function sensorCharts(root) {
    var source = document.getElementById("chart-data");
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var byType = {};
    data.buckets.forEach(function (b) {
      (byType[b.type] = byType[b.type] || []).push(b);
    });
    Object.keys(byType).forEach(function (type) {
      var el = root.querySelector('.chart[data-chart-type="' + type + '"]');
      if (!el) return;
      var series = [
        { label: "mean", stroke: COLORS[0], width: 2, spanGaps: false },
        { label: "min", stroke: "rgba(31,111,235,0.45)", width: 1 },
        { label: "max", stroke: "rgba(31,111,235,0.45)", width: 1 },
      ];
      var unit = type + " (" + el.dataset.unit + ")";
      charts[type] = draw(el, series, bucketColumns(byType[type], data.interval), unit);
    });
  }

  /* Presets apply at once; editing a time switches the picker to a custom range. */
  function rangePicker(form) {
    var select = form.querySelector("select[name=range]");
    select.addEventListener("change", function () {
      if (select.value !== "custom") form.submit();
    });
    form.querySelectorAll("input[type=datetime-local]").forEach(function (input) {
      input.addEventListener("change", function () { select.value = "custom"; });
    });
  }

  /* "2026-11-22 05:10:03.794833+00:00", ISO 8601 or UNIX seconds -> seconds. */
  function parseTime(text) {
    text = text.trim();
    if (/^-?\d+(\.\d+)?$/.test(text)) return parseFloat(text);
    var m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(?::\d\d)?)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$/
      .exec(text);
    if (!m) return null;
    var zone = (m[4] || "Z").replace(/^([+-]\d\d)(\d\d)$/, "$1:$2");
    var ms = Date.parse(m[1] + "T" + m[2] + (m[3] || "").slice(0, 4) + zone);
    return isNaN(ms) ? null : ms / 1e3;
  }

  function parseNumber(text) {
    var value = parseFloat(text);
    return text.trim() === "" || isNaN(value) ? null : value;
  }

  /* Points as uPlot columns, with a gap (a null in every series) where the time
   * step is much wider than usual; a missing value is undefined, which uPlot
   * draws across, so a column filled in every other row still is one line. */
  function gapColumns(points, width) {
    var xs = points.map(function (p) { return p[0]; });
    var hole = 2.5 * usualStep(xs, 0);
    var data = [[]];
    for (var k = 0; k < width; k++) data.push([]);
    points.forEach(function (p, i) {
      if (i > 0 && hole > 0 && p[0] - xs[i - 1] > hole) {
        data[0].push((p[0] + xs[i - 1]) / 2);
        for (var j = 1; j <= width; j++) data[j].push(null);
      }
      data[0].push(p[0]);
      for (var c = 1; c <= width; c++) data[c].push(p[c] === null ? undefined : p[c]);
    });
    return data;
  }

  /* The download page: the measured columns over the first time column that has
   * values (the configured time columns come first, the upload time last). */
  function tableChart(el, table) {
    var names = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) {
      return th.textContent;
    });
    var rows = Array.prototype.map.call(table.tBodies[0].rows, function (tr) {
      return Array.prototype.map.call(tr.cells, function (td) { return td.textContent; });
    });
    var timeColumn = null;
    JSON.parse(table.dataset.timeColumns).forEach(function (name) {
      var at = names.indexOf(name);
      if (timeColumn !== null || at < 0) return;
      if (rows.some(function (r) { return parseTime(r[at]) !== null; })) timeColumn = at;
    });
    var numeric = JSON.parse(table.dataset.numericColumns);
    if (timeColumn === null || !numeric.length) return;
    var points = rows
      .map(function (r) {
        return [parseTime(r[timeColumn])].concat(numeric.map(function (name) {
          return parseNumber(r[names.indexOf(name)]);
        }));
      })
      .filter(function (p) { return p[0] !== null; })
      .sort(function (a, b) { return a[0] - b[0]; });
    var data = gapColumns(points, numeric.length);
    // Columns differ in size (ppm next to °C): each gets its own scale, and the
    // first two their own axis, left and right.
    var series = numeric.map(function (name, i) {
      return { label: name, scale: name, stroke: COLORS[i % COLORS.length],
               width: 1.5, spanGaps: false, points: { show: points.length <= 60 } };
    });
    var axes = numeric.slice(0, 2).map(function (name, i) {
      return { scale: name, label: name, side: i ? 1 : 3,
               stroke: COLORS[i], grid: { show: i === 0 } };
    });
    var xName = names[timeColumn];
    charts.data = draw(el, series, data, axes, 300, xName + " (UTC)");
    el.dataset.xColumn = xName;
  }

  function resize() {
    Object.keys(charts).forEach(function (key) {
      var chart = charts[key];
      chart.setSize({ width: chartWidth(chart.root.parentNode), height: chart.height });
    });
  }

  function init() {
    var root = document.getElementById("charts");
    if (root) sensorCharts(root);
    var form = document.getElementById("range-picker");
    if (form) rangePicker(form);
    var dataChart = document.getElementById("data-chart");
    var table = document.getElementById("data-table");
    if (dataChart && table && table.dataset.timeColumns) tableChart(dataChart, table);
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(resize, 150);
    });
    document.documentElement.dataset.chartsReady = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
