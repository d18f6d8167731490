// One OpenSearch node for auditflow's tests: single-node discovery on 127.0.0.1, no
// security plugin, HTTP on the port given (the transport on port + 100), data and logs
// under the home directory given. Run by scripts/services.sh.
import java.nio.file.*;
import java.util.*;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;
import org.opensearch.analysis.common.CommonAnalysisPlugin;

public class OsNode {
  /** A node with the plugins given on the class path (Node's constructor for that is protected). */
  static class PluginNode extends Node {
    PluginNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
      super(env, plugins, true);
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: OsNode HOME_DIR HTTP_PORT");
      System.exit(2);
    }
    String home = args[0];
    int port = Integer.parseInt(args[1]);
    Files.createDirectories(Paths.get(home, "config"));
    Settings settings = Settings.builder()
        .put("cluster.name", "auditflow-test").put("node.name", "auditflow-test-1")
        .put("path.home", home).put("path.data", home + "/data").put("path.logs", home + "/logs")
        .put("discovery.type", "single-node")
        .put("network.host", "127.0.0.1").put("http.port", port).put("transport.port", port + 100)
        .put("cluster.routing.allocation.disk.threshold_enabled", false)
        .put("action.auto_create_index", true)
        .build();
    Environment env = InternalSettingsPreparer.prepareEnvironment(
        settings, Collections.emptyMap(), Paths.get(home, "config"), () -> "auditflow-test-1");
    Node node = new PluginNode(env, List.of(Netty4Plugin.class, CommonAnalysisPlugin.class));
    node.start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        node.close();
      } catch (Exception e) {
        e.printStackTrace();
      }
    }));
    System.out.println("OPENSEARCH STARTED on 127.0.0.1:" + port);
    Thread.currentThread().join();
  }
}
