#!/usr/bin/env node
// Entry point for the `pagoda` command: the runtime's TypeScript runs directly on Node >= 22.18.
import { main } from '../src/cli.ts';

await main(process.argv.slice(2));
