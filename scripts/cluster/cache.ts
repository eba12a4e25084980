/**
 * Where Pagoda caches what it builds or downloads outside the clone: PAGODA_CACHE_DIR, else
 * $XDG_CACHE_HOME/pagoda, else ~/.cache/pagoda (the runtime's model cache uses the same root).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function cacheRoot(): string {
  if (process.env.PAGODA_CACHE_DIR) return process.env.PAGODA_CACHE_DIR;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'pagoda');
}
