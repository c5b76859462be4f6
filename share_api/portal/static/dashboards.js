/* The dashboards' charts (share_api/portal/pages_dashboards.py): each <div data-chart> is
   drawn with the vendored ECharts' SVG renderer from the JSON in the <script
   type="application/json"> it names; the demand heat map's layers (plain SVG) are switched
   by their <select>. Each sets data-rendered="1" when done. No inline script (CSP). */
(function () {
  'use strict';
  var INK = '#111', GRID = '#5a5a5a';
  var PALETTE = ['#0b3d91', '#8a1c1c', '#14532d', '#7a3e00', '#5b2a86', '#005f73', '#3d3d3d'];
  var FONT = {fontSize: 16, color: INK};

  function unitLabel(unit) { return unit === 'share' ? '%' : (unit === 'hours' ? '小时' : ''); }

  function axisOf(categories) {
    return {type: 'category', data: categories,
      axisLabel: {interval: categories.length > 31 ? 'auto' : 0, fontSize: 14, color: INK},
      axisLine: {lineStyle: {color: GRID}}};
  }

  function valueAxis(unit, fit) {  // fit: the axis spans the values (trends), not from 0
    return {type: 'value', name: unitLabel(unit), nameTextStyle: FONT, scale: !!fit,
      axisLabel: {fontSize: 14, color: INK}, splitLine: {lineStyle: {color: '#c8c8c8'}}};
  }

  function barOrLine(spec) {
    var kind = spec.kind === 'line' ? 'line' : 'bar';
    var cats = axisOf(spec.categories), vals = valueAxis(spec.unit, kind === 'line');
    var legendRows = Math.ceil(spec.series.length / 4);  // room for the legend above
    if (spec.horizontal) {  // the first category on top, as in the table
      cats.inverse = true; cats.axisLabel.width = 220; cats.axisLabel.overflow = 'break';
    }
    return {
      color: PALETTE,
      legend: {top: 0, textStyle: FONT},
      grid: {left: spec.horizontal ? 230 : 60, right: 30, top: 30 + 28 * legendRows, bottom: 60},
      tooltip: {trigger: 'axis'},
      xAxis: spec.horizontal ? vals : cats,
      yAxis: spec.horizontal ? cats : vals,
      series: spec.series.map(function (s) {
        return {name: s.name, type: kind, data: s.values, connectNulls: false,
          symbolSize: 8, label: {show: kind === 'bar', fontSize: 13, color: INK,
            position: spec.horizontal ? 'right' : 'top'}};
      })
    };
  }

  function heatmap(spec) {
    var values = spec.cells.map(function (c) { return c[2]; });
    return {
      grid: {left: 230, right: 30, top: 20, bottom: 90},
      tooltip: {},
      xAxis: axisOf(spec.x),
      yAxis: Object.assign(axisOf(spec.y), {inverse: true}),
      visualMap: {min: Math.floor(Math.min.apply(null, values.concat([100]))), max: 100,
        calculable: false, text: ['100', '低'], orient: 'horizontal', left: 'center', bottom: 0,
        textStyle: FONT,
        inRange: {color: ['#fff5eb', '#fdae6b', '#e6550d', '#7f2704']}},
      series: [{type: 'heatmap', data: spec.cells,
        label: {show: true, fontSize: 13, color: INK, backgroundColor: '#ffffff', padding: 2},
        itemStyle: {borderColor: '#ffffff', borderWidth: 2}}]
    };
  }

  function draw(el) {
    var spec = JSON.parse(document.getElementById(el.getAttribute('data-chart')).textContent);
    var rows = spec.kind === 'heatmap' ? spec.y.length : (spec.horizontal ? spec.categories.length : 0);
    if (rows > 8) { el.style.height = (rows * 34 + 110) + 'px'; }
    if (spec.series && spec.series.length > 8) {  // a long legend: keep the plot's height
      el.style.height = (380 + 28 * Math.ceil(spec.series.length / 4)) + 'px';
    }
    var chart = echarts.init(el, null, {renderer: 'svg'});
    chart.on('finished', function () { el.setAttribute('data-rendered', '1'); });
    chart.setOption(Object.assign({animation: false, aria: {enabled: false}},
      spec.kind === 'heatmap' ? heatmap(spec) : barOrLine(spec)));
    window.addEventListener('resize', function () { chart.resize(); });
  }

  function layers(select) {
    var box = document.getElementById(select.getAttribute('data-layers'));
    function show() {
      box.querySelectorAll('svg.layer').forEach(function (svg) {
        if (svg.getAttribute('data-layer') === select.value) { svg.removeAttribute('hidden'); }
        else { svg.setAttribute('hidden', ''); }
      });
    }
    select.addEventListener('change', show);
    show();
    box.setAttribute('data-rendered', '1');
  }

  document.querySelectorAll('[data-chart]').forEach(draw);
  document.querySelectorAll('select[data-layers]').forEach(layers);
}());
