/** A model that cannot be loaded: names the file (or directory) and the problem, nothing else. */
export class ModelLoadError extends Error {
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = 'ModelLoadError';
    this.path = path;
  }
}
