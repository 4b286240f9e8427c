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
    if (tiles) {
      var layer = L.tileLayer(tiles, {
        maxZoom: 19,
        attribution: element.dataset.attribution || "",
      }).addTo(map);
      layer.on("tileerror", function () {
        if (note) {
          note.textContent = "Map tiles cannot be loaded; a click still sets lat/lon.";
        }
      });
    }
    grid(map);
    return map;
  }

  // A graticule every 10 degrees, so a tile-less map is not a blank square.
  function grid(map) {
    var style = { color: "#9aa7b4", weight: 1, opacity: 0.6, interactive: false };
    for (var lat = -80; lat <= 80; lat += 10) {
      L.polyline([[lat, -540], [lat, 540]], style).addTo(map);
    }
    for (var lon = -540; lon <= 540; lon += 10) {
      L.polyline([[-85, lon], [85, lon]], style).addTo(map);
    }
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
