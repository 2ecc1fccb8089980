#!/usr/bin/env node
// Runs the TypeScript sources through tsx so that the CLI works straight from a checkout, with no build step.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
