/** npm run cluster:down — stops every process `cluster:up` started and deletes the cluster's data. */
import { stopCluster } from './cluster.ts';

console.log((await stopCluster()) ? 'cluster: stopped' : 'cluster: none running');
