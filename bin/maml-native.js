#!/usr/bin/env node
// The CLI entry point: the compiled TypeScript lives in lib/ (npm install runs `tsc`).
import { main } from '../lib/cli.js';

process.exitCode = await main(process.argv.slice(2));
