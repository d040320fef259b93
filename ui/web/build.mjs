// Bundles the app into dist/ (embedded by lumen-ui): the page's script, the
// map's layout worker, the page, the styles.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: { app: 'src/main.ts', layout: 'src/layout.ts' },
  bundle: true,
  minify: true,
  sourcemap: true,
  target: 'es2022',
  format: 'esm',
  outdir: 'dist',
  logLevel: 'warning',
});
copyFileSync('index.html', 'dist/index.html');
copyFileSync('style.css', 'dist/style.css');
