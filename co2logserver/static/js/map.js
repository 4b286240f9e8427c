// Maps of the owners' settings page (#picker: a click sets lat/lon) and of /map
// (#sensor-map: one marker per sensor at its rounded position). Tiles come from
// the server's CO2LOGSERVER_MAP_TILE_URL only; without tiles (none configured, or
// unreachable) the map shows a grid and still works as a picker.
(function () {
  "use strict";

  function baseMap(element, center, zoom) {
    var map = L.map(element, { worldCopyJump: true }).setView(center, zoom);
    var tiles = element.dataset.tiles;
    var note = document.getElementById("map-note");
    var gridded = false;
    function fallback() {
      if (!gridded) grid(map);
      gridded = true;
    }
    if (tiles) {
      var layer = L.tileLayer(tiles, {
        maxZoom: 19,
        attribution: element.dataset.attribution || "",
      }).addTo(map);
      layer.on("tileerror", function () {
        fallback();
        if (note) {
          note.textContent = "Map tiles cannot be loaded; a click still sets lat/lon.";
        }
      });
    } else {
      fallback();
    }
    return map;
  }

  // A labelled graticule whose spacing follows the zoom (about eight lines across),
  // so a map without tiles still shows where a click lands.
  var STEPS = [10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001,
    0.0005, 0.0002, 0.0001];

  function grid(map) {
    var layer = L.layerGroup().addTo(map);
    var style = { color: "#9aa7b4", weight: 1, opacity: 0.7, interactive: false };
    function label(text, point) {
      var icon = L.divIcon({ className: "grid-label", html: text, iconSize: null });
      L.marker(point, { icon: icon, interactive: false, keyboard: false }).addTo(layer);
    }
    function draw() {
      layer.clearLayers();
      var b = map.getBounds();
      var span = Math.max(b.getNorth() - b.getSouth(), 1e-6);
      var step = STEPS[0];
      for (var i = 0; i < STEPS.length; i++) {
        if (span / STEPS[i] > 8) break;
        step = STEPS[i];
      }
      var digits = Math.max(0, Math.ceil(-Math.log10(step)));
      var south = Math.max(-85, Math.floor(b.getSouth() / step) * step);
      var west = Math.floor(b.getWest() / step) * step;
      for (var lat = south; lat <= Math.min(85, b.getNorth()); lat += step) {
        L.polyline([[lat, b.getWest()], [lat, b.getEast()]], style).addTo(layer);
        label(lat.toFixed(digits) + "°", [lat, b.getWest()]);
      }
      for (var lon = west; lon <= b.getEast(); lon += step) {
        L.polyline([[b.getSouth(), lon], [b.getNorth(), lon]], style).addTo(layer);
        label(lon.toFixed(digits) + "°", [b.getSouth(), lon]);
      }
    }
    map.on("moveend", draw);
    draw();
  }

  function round(value) {
    return Math.round(value * 1e6) / 1e6;
  }

  function picker(element) {
    var lat = parseFloat(element.dataset.latitude);
    var lon = parseFloat(element.dataset.longitude);
    var known = !isNaN(lat) && !isNaN(lon);
    var map = baseMap(element, known ? [lat, lon] : [20, 0], known ? 15 : 2);
    var marker = known ? L.circleMarker([lat, lon], { radius: 8 }).addTo(map) : null;
    map.on("click", function (event) {
      var point = event.latlng.wrap();
      window.co2picked = { lat: point.lat, lng: point.lng };
      document.getElementById("latitude").value = round(point.lat);
      document.getElementById("longitude").value = round(point.lng);
      if (marker) {
        marker.setLatLng(point);
      } else {
        marker = L.circleMarker(point, { radius: 8 }).addTo(map);
      }
    });
    window.co2picker = map;
  }

  // Colour of a PM2.5-like value: green to red in steps (µg/m³, WHO-style bands).
  function colour(value) {
    if (value === null || value === undefined) return "#8c959f";
    var steps = [[5, "#1a7f37"], [15, "#6fbf3b"], [25, "#e3b341"], [50, "#d97706"]];
    for (var i = 0; i < steps.length; i++) {
      if (value <= steps[i][0]) return steps[i][1];
    }
    return "#b42318";
  }

  function sensorMap(element) {
    var markers = JSON.parse(document.getElementById("map-data").textContent);
    var map = baseMap(element, [20, 0], 2);
    var points = [];
    markers.forEach(function (m) {
      var point = [m.latitude, m.longitude];
      points.push(point);
      var circle = L.circleMarker(point, {
        radius: 8,
        color: "#1d2733",
        weight: 1,
        fillColor: colour(m.value),
        fillOpacity: 0.9,
      }).addTo(map);
      var link = document.createElement("a");
      link.href = m.url;
      link.textContent = (m.name || m.suid) + (m.value === null ? "" : ": " + m.value);
      circle.bindPopup(link);
      circle.on("click", function () {
        window.co2lastMarker = m.suid;
      });
    });
    if (points.length) map.fitBounds(points, { maxZoom: 12, padding: [30, 30] });
    window.co2map = map;
    window.co2markers = markers.length;
  }

  function start() {
    var element = document.getElementById("picker");
    if (element) picker(element);
    element = document.getElementById("sensor-map");
    if (element) sensorMap(element);
    document.documentElement.dataset.mapReady = "1";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
