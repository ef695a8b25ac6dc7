import { summarizeCpuProfile } from './lib';
const file = process.argv[2]!;
void summarizeCpuProfile(file, undefined, 45).then((s) => {
  console.log('total ms', s.totalMs);
  for (const o of s.byOwner.slice(0, 20)) console.log(String(o.ms).padStart(7), String(o.pct).padStart(5), o.where);
  console.log('---');
  for (const f of s.bySelfTime) console.log(String(f.ms).padStart(7), String(f.pct).padStart(5), f.fn, f.where);
});
