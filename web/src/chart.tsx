import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  stroke: string;
  fill?: string;
  dash?: number[];
  width?: number;
}

/**
 * A uPlot chart over categorical periods (the API's local period labels, so the axis shows the
 * license's zone without any conversion in the browser). `renderKey` names what is drawn: the
 * container carries it once the chart has been drawn, which is what tests and the benchmark wait for.
 */
export function Chart({ title, labels, series, band, renderKey, height = 260 }: { title: string; labels: string[]; series: ChartSeries[]; band?: [number, number]; renderKey: string; height?: number }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    el.removeAttribute('data-drawn');
    const x = labels.map((_, i) => i);
    const opts: uPlot.Options = {
      width: Math.max(280, el.clientWidth),
      height,
      scales: { x: { time: false } },
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      axes: [
        {
          values: (_u, splits) => splits.map((s) => (Number.isInteger(s) && labels[s] !== undefined ? labels[s]! : '')),
          space: 60,
        },
        { size: 70 },
      ],
      series: [{ label: 'Period', value: (_u, v) => (v === null || labels[v] === undefined ? '' : labels[v]!) }, ...series.map((s) => ({ label: s.label, stroke: s.stroke, fill: s.fill, dash: s.dash, width: s.width ?? 2, spanGaps: false, points: { show: labels.length <= 62 } }))],
      bands: band ? [{ series: band, fill: 'rgba(37, 99, 235, 0.15)' }] : undefined,
      hooks: {
        ready: [
          () => {
            el.setAttribute('data-drawn', renderKey);
            // for `npm run bench -- web`: when this chart was drawn, on the page's clock
            performance.mark(`chart-drawn:${renderKey}`);
          },
        ],
      },
    };
    const chart = new uPlot(opts, [x, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => chart.setSize({ width: Math.max(280, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
    };
  }, [labels, series, band, renderKey, height]);
  return <div className="chart" ref={host} role="img" aria-label={title} data-points={labels.length} />;
}
