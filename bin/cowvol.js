#!/usr/bin/env node
// Entry point: the compiled CLI lives in dist/ (built by `npm ci` or `npm run build`).
import { main } from '../dist/src/cli/main.js';

await main(process.argv.slice(2));
